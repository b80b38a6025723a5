# featdefense: `snakemake --cores 4 all` runs the whole pipeline; the rules live in workflow/.
include: "workflow/Snakefile"
