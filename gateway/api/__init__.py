"""HTTP only: one blueprint per surface. Blueprints never build documents by hand."""
