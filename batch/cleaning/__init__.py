"""Pure bronze -> silver transforms: each returns the silver rows and the quarantined rows."""
