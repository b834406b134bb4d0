"""``python -m sipas_lib.schemas > docs/CONTRACTS.md`` writes the contracts document."""

from sipas_lib.schemas import contracts_markdown

print(contracts_markdown(), end="")
