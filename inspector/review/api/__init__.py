"""The /api/v1 JSON API, one router per resource."""
