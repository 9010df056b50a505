"""The catalog: Glue Data Catalog tables built from each export's own schema (its table entries), registered,
repointed (Latest) and removed (Delete). Layers: handlers -> register (Glue calls, paced) -> schema (pure).
May import api/, aws/ (the Glue gateway, the error taxonomy), runtime/ and exports/' decision types; never
another capability's handlers.
"""
