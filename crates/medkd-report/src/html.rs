//! Building the page: escaping, tables, figures and the frame with its stylesheet.

use std::fmt::Write;

/// Text made safe for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A metric as the report prints it: 4 decimals, `–` where undefined.
pub fn number(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.4}"),
        _ => "–".into(),
    }
}

/// A table of already-escaped cells; the first row is the header.
pub fn table(rows: &[Vec<String>]) -> String {
    let mut html = String::from("<table>");
    for (i, row) in rows.iter().enumerate() {
        let cell = if i == 0 { "th" } else { "td" };
        html.push_str("<tr>");
        for value in row {
            let _ = write!(html, "<{cell}>{value}</{cell}>");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html
}

/// An SVG plot in a figure that names its kind (`data-plot`), so a check can count the plots.
pub fn figure(kind: &str, svg: &str) -> String {
    format!("<figure data-plot=\"{}\">{svg}</figure>", escape(kind))
}

/// The whole page: `body` plus the plots' data as inert JSON (`#medkd-data`), so the numbers
/// behind each plot can be read back and checked.
pub fn page(title: &str, body: &str, data: &serde_json::Value) -> String {
    // `</` inside the JSON could close the script element early; `<\/` is the same JSON string.
    let data = serde_json::to_string(data).expect("JSON values serialize").replace("</", "<\\/");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<style>{STYLE}</style></head>\n\
         <body>\n{body}\n<script type=\"application/json\" id=\"medkd-data\">{data}</script>\n</body></html>\n",
        title = escape(title)
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1120px;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin-top:1.5em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}\
.plots{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}\
.heat td{text-align:center;min-width:3.2em}.card th{text-align:left;width:9em}.tile{font-size:.8em;width:160px}.tile img{display:block}.card td{text-align:left}.note{color:#555;font-size:.92em}\
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}";
