"""Quality step: rule-by-rule cleaning of the ingested trips (docs/quality.md)."""
