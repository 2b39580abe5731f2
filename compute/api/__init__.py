"""The REST API (/api/v1/): the same actions and access layer as the pages. Built by a later
issue; the package is here so the layout and the import contracts already hold for it."""
