//! The run report: one document model rendered twice, as `report.md` (pictures as PNG files
//! beside it) and as a self-contained `report.html` (pictures embedded as data URIs).

pub mod picture;
pub mod plot;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use picture::{Picture, base64, grey, grid, heat, overlay};

/// A block of a report section.
#[derive(Debug, Clone)]
pub enum Block {
    /// A paragraph of plain text (Markdown inline code in backticks is kept).
    Text(String),
    /// A table: header, then rows.
    Table(Vec<String>, Vec<Vec<String>>),
    /// A picture: its file name under the report folder, its caption and PNG bytes.
    Image {
        file: String,
        caption: String,
        png: Vec<u8>,
    },
    /// Preformatted text (the pipeline file).
    Code(String, String),
}

/// A titled section.
#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub blocks: Vec<Block>,
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Document {
    pub title: String,
    pub sections: Vec<Section>,
}

impl Document {
    /// Markdown with pictures linked as `folder/file`.
    pub fn markdown(&self, folder: &str) -> String {
        let mut s = format!("# {}\n", self.title);
        for section in &self.sections {
            let _ = write!(s, "\n## {}\n", section.title);
            for block in &section.blocks {
                s.push('\n');
                match block {
                    Block::Text(t) => {
                        let _ = writeln!(s, "{t}");
                    }
                    Block::Table(head, rows) => {
                        let cell = |c: &String| c.replace('|', "\\|");
                        let _ = writeln!(
                            s,
                            "| {} |",
                            head.iter().map(cell).collect::<Vec<_>>().join(" | ")
                        );
                        let _ = writeln!(s, "|{}", " --- |".repeat(head.len()));
                        for r in rows {
                            let _ = writeln!(
                                s,
                                "| {} |",
                                r.iter().map(cell).collect::<Vec<_>>().join(" | ")
                            );
                        }
                    }
                    Block::Image { file, caption, .. } => {
                        let _ = writeln!(s, "![{caption}]({folder}/{file})\n\n*{caption}*");
                    }
                    Block::Code(lang, text) => {
                        let _ = writeln!(s, "```{lang}\n{}\n```", text.trim_end());
                    }
                }
            }
        }
        s
    }

    /// One HTML file, pictures embedded.
    pub fn html(&self) -> String {
        let mut s = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{}</style></head><body>\n<h1>{}</h1>\n",
            escape(&self.title),
            STYLE,
            escape(&self.title)
        );
        for section in &self.sections {
            let _ = writeln!(s, "<h2>{}</h2>", escape(&section.title));
            for block in &section.blocks {
                match block {
                    Block::Text(t) => {
                        let _ = writeln!(s, "<p>{}</p>", inline_code(&escape(t)));
                    }
                    Block::Table(head, rows) => {
                        s.push_str("<table><thead><tr>");
                        for h in head {
                            let _ = write!(s, "<th>{}</th>", escape(h));
                        }
                        s.push_str("</tr></thead><tbody>\n");
                        for r in rows {
                            s.push_str("<tr>");
                            for c in r {
                                let _ = write!(s, "<td>{}</td>", escape(c));
                            }
                            s.push_str("</tr>\n");
                        }
                        s.push_str("</tbody></table>\n");
                    }
                    Block::Image { caption, png, .. } => {
                        let _ = writeln!(
                            s,
                            "<figure><img alt=\"{0}\" src=\"data:image/png;base64,{1}\"><figcaption>{0}</figcaption></figure>",
                            escape(caption),
                            base64(png)
                        );
                    }
                    Block::Code(_, text) => {
                        let _ = writeln!(s, "<pre>{}</pre>", escape(text));
                    }
                }
            }
        }
        s.push_str("</body></html>\n");
        s
    }

    /// Writes `dir/report.md`, `dir/report.html` and the pictures under `dir/report/`,
    /// each atomically. Returns every written path.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, String> {
        let folder = "report";
        let pictures = dir.join(folder);
        std::fs::create_dir_all(&pictures).map_err(|e| format!("{}: {e}", pictures.display()))?;
        let mut written = Vec::new();
        for section in &self.sections {
            for block in &section.blocks {
                if let Block::Image { file, png, .. } = block {
                    let path = pictures.join(file);
                    crate::volume::AtomicFile::write(&path, png)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    written.push(path);
                }
            }
        }
        for (name, text) in [
            ("report.md", self.markdown(folder)),
            ("report.html", self.html()),
        ] {
            let path = dir.join(name);
            crate::volume::AtomicFile::write(&path, text.as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:right}\
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}pre{background:#f7f7f7;padding:0.8em;overflow-x:auto}\
img{max-width:100%;image-rendering:pixelated}figure{margin:1em 0}figcaption{font-size:0.9em;color:#555}\
code{background:#f2f2f2;padding:0 0.2em}";

/// HTML-escapes text.
pub fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Turns `code` spans of (already escaped) text into `<code>` elements.
fn inline_code(t: &str) -> String {
    let mut out = String::new();
    for (i, part) in t.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_embeds_pictures_and_escapes_text() {
        let png = Picture::filled(2, 2, [1, 2, 3]).png().unwrap();
        let doc = Document {
            title: "a <b>".into(),
            sections: vec![Section {
                title: "s".into(),
                blocks: vec![
                    Block::Text("x `y` & z".into()),
                    Block::Image {
                        file: "p.png".into(),
                        caption: "c".into(),
                        png: png.clone(),
                    },
                ],
            }],
        };
        let html = doc.html();
        assert!(html.contains("<title>a &lt;b&gt;</title>"));
        assert!(html.contains("x <code>y</code> &amp; z"));
        assert!(html.contains(&format!("data:image/png;base64,{}", base64(&png))));
        let md = doc.markdown("report");
        assert!(md.contains("![c](report/p.png)"));
    }
}
