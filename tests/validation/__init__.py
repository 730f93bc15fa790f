"""Comparisons against external tools (plink2, bcftools); skipped when a tool is absent."""
