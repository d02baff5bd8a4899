"""Loading, statistics and plots of hopbench run directories (never imports a Kubernetes client).

Entry points (import the module you need; nothing is imported here, so `import analysis`
stays cheap):

- `analysis.load.load_runs(dirs, allow_mixed=False)` -> `RunData` (hops, events, runs, meta)
- `analysis.stats.summary_tables(hops, Settings())` -> summary, mode ratios, per-node tables
- `analysis.plots.FIGURES` / `render_all(data, out_dir)` -> the report's PNGs
- `analysis.report.write_report(run_dirs, out_dir)` -> PNGs, CSVs and report.html
- `analysis.growth.growth_table(data)` -> a sweep's figures per point and growth exponents
  (`analysis.plots_growth` draws them; the report adds them for a run of several points)
- `analysis/notebooks/*.ipynb` read the run named by $HOPBENCH_RUN_DIR (default results/sample)

Bad input raises `analysis.errors.AnalysisError` (a ValueError) with a one-line message.
"""
