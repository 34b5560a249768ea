"""Reading run folders back and presenting them; never trains. `runfiles` reads a folder,
`figkit` is figure plumbing, `plots`/`plots_grid` draw, `markdown` writes report.md, `compare` puts runs side by side."""
