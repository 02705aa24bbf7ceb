//! Lab markdown to safe HTML, rendered once at load.
//!
//! The markup the lab page and its scripts rely on:
//! - every fenced code block: `<div class="code"><pre><code class="language-X">…</code></pre>
//!   <button type="button" class="copy" hidden>Copy</button></div>` (the page's script unhides the
//!   button when the clipboard is usable);
//! - `sh`/`bash`/`shell`/`console` blocks also get `data-run` on the `<pre>` and a
//!   `<button type="button" class="run" hidden>Run in terminal</button>` that the terminal script
//!   unhides once a terminal is open;
//! - blockquotes whose first words are `**Hint:**`, `**Warning:**` or `**Note:**` become
//!   `<aside class="callout callout-hint|warning|note">`.
//!
//! Raw HTML in the markdown goes through ammonia with only these additions to its safe defaults,
//! so a `<script>` or an `onclick` in lab content renders inert.

use std::sync::LazyLock;

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};

const RUNNABLE: [&str; 4] = ["sh", "bash", "shell", "console"];

static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::default();
    builder
        .add_tags(["aside", "button"])
        .add_tag_attributes("div", ["class"])
        .add_tag_attributes("aside", ["class"])
        .add_tag_attributes("pre", ["data-run"])
        .add_tag_attributes("code", ["class"])
        .add_tag_attributes("button", ["type", "class", "hidden"])
        .add_tag_attributes("span", ["class"]);
    builder
});

/// Markdown (CommonMark + tables + strikethrough) to sanitized HTML.
pub fn render(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events: Vec<Event<'_>> = Parser::new_ext(markdown, options).collect();
    let mut out: Vec<Event<'_>> = Vec::with_capacity(events.len());
    // One entry per open blockquote: whether it was turned into a callout.
    let mut quotes: Vec<bool> = Vec::new();
    let mut code: Option<(String, String)> = None;
    for (index, event) in events.iter().enumerate() {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let language = match kind {
                    CodeBlockKind::Fenced(info) => info
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase(),
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((language, String::new()));
            }
            Event::Text(text) if code.is_some() => {
                if let Some((_, body)) = code.as_mut() {
                    body.push_str(text);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some((language, body)) = code.take() {
                    out.push(Event::Html(CowStr::from(code_block(&language, &body))));
                }
            }
            Event::Start(Tag::BlockQuote(_)) => {
                let kind = callout_kind(&events[index + 1..]);
                quotes.push(kind.is_some());
                match kind {
                    Some(kind) => out.push(Event::Html(CowStr::from(format!(
                        "<aside class=\"callout callout-{kind}\">\n"
                    )))),
                    None => out.push(event.clone()),
                }
            }
            Event::End(TagEnd::BlockQuote(_)) => {
                if quotes.pop() == Some(true) {
                    out.push(Event::Html(CowStr::from("</aside>\n")));
                } else {
                    out.push(event.clone());
                }
            }
            _ => out.push(event.clone()),
        }
    }
    let mut html = String::with_capacity(markdown.len() * 2);
    pulldown_cmark::html::push_html(&mut html, out.into_iter());
    SANITIZER.clean(&html).to_string()
}

/// `hint`, `warning` or `note` when a blockquote opens with that bold label.
fn callout_kind(rest: &[Event<'_>]) -> Option<&'static str> {
    match rest {
        [
            Event::Start(Tag::Paragraph),
            Event::Start(Tag::Strong),
            Event::Text(label),
            ..,
        ] => match label
            .trim()
            .trim_end_matches(':')
            .to_ascii_lowercase()
            .as_str()
        {
            "hint" => Some("hint"),
            "warning" => Some("warning"),
            "note" => Some("note"),
            _ => None,
        },
        _ => None,
    }
}

fn code_block(language: &str, body: &str) -> String {
    let runnable = RUNNABLE.contains(&language);
    let class = if language.is_empty() {
        String::new()
    } else {
        format!(" class=\"language-{}\"", escape(language))
    };
    let run_attr = if runnable { " data-run" } else { "" };
    let run_button = if runnable {
        "<button type=\"button\" class=\"run\" hidden>Run in terminal</button>"
    } else {
        ""
    };
    format!(
        "<div class=\"code\"><pre{run_attr}><code{class}>{}</code></pre>\
         <button type=\"button\" class=\"copy\" hidden>Copy</button>{run_button}</div>\n",
        escape(body)
    )
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn a_script_tag_in_markdown_renders_inert() {
        let html = render("Hello <script>alert(1)</script> <img src=x onerror=alert(2)>");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("onerror"), "{html}");
    }

    #[test]
    fn shell_blocks_are_marked_runnable_and_others_are_not() {
        let html = render("```sh\nkubectl get ns\n```\n\n```yaml\na: <b>\n```\n");
        assert!(html.contains("<pre data-run"), "{html}");
        assert!(html.contains("Run in terminal"), "{html}");
        assert_eq!(html.matches("data-run").count(), 1, "{html}");
        assert!(html.contains("a: &lt;b&gt;"), "{html}");
        assert_eq!(html.matches("class=\"copy\"").count(), 2, "{html}");
    }

    #[test]
    fn hint_warning_and_note_blockquotes_become_callouts() {
        let html = render(
            "> **Hint:** look closer\n\n> **Warning:** careful\n\n> **Note:** fyi\n\n> plain quote\n",
        );
        assert!(
            html.contains("<aside class=\"callout callout-hint\">"),
            "{html}"
        );
        assert!(html.contains("callout-warning"), "{html}");
        assert!(html.contains("callout-note"), "{html}");
        assert!(html.contains("<blockquote>"), "{html}");
    }
}
