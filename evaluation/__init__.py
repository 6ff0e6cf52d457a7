"""Does the map land on the object, and does it explain the decision? Map reading, the explanation methods'
registry with its baselines, the localization, faithfulness and sanity metrics, and the report's records,
tables, figures and HTML page."""
