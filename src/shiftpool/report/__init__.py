"""Tables and figures of results: JSON, CSV and Markdown writers; matplotlib figures with the
intervals of the results (error bars, whiskers, bands) and captions saying what they rest on.

The tables need nothing beyond the standard library; the figures need matplotlib
(``pip install shiftpool[plots]``), imported only when a figure is drawn.

Example:
    >>> from shiftpool.report import markdown_table
    >>> print(markdown_table([{"method": "aps", "c_cons": 1.0}]))
    | method | c_cons |
    |---|---|
    | aps | 1.0000 |
"""

from shiftpool.report.correlation import correlation_figure, plot_correlation
from shiftpool.report.figures import (
    FIGURE_FILES,
    plot_accuracy_vs_diagonal,
    plot_accuracy_vs_offset,
    plot_consistency_map,
    plot_consistency_vs_accuracy,
    plot_differences,
    plot_homogeneity,
    plot_msb,
    plot_sensitivity_map,
    plot_summary,
    render_figures,
    sensitivity_map_png,
    write_figures,
)
from shiftpool.report.html import html_report, html_report_file, write_html_report
from shiftpool.report.tables import (
    ReportFile,
    ReportInfo,
    csv_text,
    format_value,
    markdown_table,
    result_files,
    write_results,
)

__all__ = [
    "FIGURE_FILES",
    "ReportFile",
    "ReportInfo",
    "correlation_figure",
    "csv_text",
    "format_value",
    "html_report",
    "html_report_file",
    "markdown_table",
    "plot_accuracy_vs_diagonal",
    "plot_accuracy_vs_offset",
    "plot_consistency_map",
    "plot_consistency_vs_accuracy",
    "plot_correlation",
    "plot_differences",
    "plot_homogeneity",
    "plot_msb",
    "plot_sensitivity_map",
    "plot_summary",
    "render_figures",
    "result_files",
    "sensitivity_map_png",
    "write_figures",
    "write_html_report",
    "write_results",
]
