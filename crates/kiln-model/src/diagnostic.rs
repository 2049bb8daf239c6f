//! Configuration errors as values: [`ConfigError`] is one problem in kiln.toml (message,
//! the span it concerns, a label, a hint), [`Diagnostics`] is all of them. Both are miette
//! diagnostics carrying the named source, so the CLI can render them with the offending
//! lines; `Display` gives `file:line:column: message` for plain logs.
//!
//! Nothing here prints: rendering is the caller's business.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode, SourceSpan};

/// The source file a diagnostic points into.
#[derive(Debug, Clone)]
pub struct Source {
    name: Arc<str>,
    text: Arc<String>,
}

impl Source {
    /// A source named `name` (how errors show the file) with its text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: Arc::from(name.into()),
            text: Arc::new(text.into()),
        }
    }

    /// How errors name the file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's content.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and column (in characters) of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before
            .get(line_start..)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        (line, col)
    }
}

/// One problem found in kiln.toml (or in reading it).
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// Stable error code, e.g. `kiln::config::unknown_key`.
    pub code: &'static str,
    /// What is wrong, in one sentence.
    pub message: String,
    /// Short text under the offending span.
    pub label: String,
    /// How to fix it.
    pub help: Option<String>,
    /// The file the error points into (`None` for errors about the file as a whole).
    pub source: Option<Source>,
    /// Byte range of the offending text in `source`.
    pub span: Option<Range<usize>>,
    /// Secondary spans (e.g. "first claimed here").
    pub related_spans: Vec<(String, Range<usize>)>,
}

impl ConfigError {
    /// An error at `span` of `source`.
    pub fn at(
        source: &Source,
        span: Range<usize>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            code,
            message: shorten(message.into()),
            label: String::from("here"),
            help: None,
            source: Some(source.clone()),
            span: Some(clamp(span, source.text.len())),
            related_spans: Vec::new(),
        }
    }

    /// An error about the file as a whole (cannot be read, ...).
    pub fn file(code: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            code,
            message: message.into(),
            label: String::new(),
            help: None,
            source: None,
            span: None,
            related_spans: Vec::new(),
        }
    }

    /// Sets the label under the span.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = shorten(label.into());
        self
    }

    /// Sets the hint.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(shorten(help.into()));
        self
    }

    /// Adds a help line only when there is one.
    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// A secondary span ("first declared here"). When it is far from the primary span it
    /// is named by line in the primary label instead, so the snippet stays short.
    pub fn also(mut self, label: impl Into<String>, span: Range<usize>) -> Self {
        let label = label.into();
        let Some(source) = self.source.clone() else {
            return self;
        };
        let span = clamp(span, source.text.len());
        let (line, _) = source.line_col(span.start);
        let primary_line = self
            .span
            .as_ref()
            .map(|p| source.line_col(p.start).0)
            .unwrap_or(line);
        if line.abs_diff(primary_line) > 6 {
            self.label = format!("{} (line {line}: {label})", self.label);
        } else {
            self.related_spans.push((label, span));
        }
        self
    }

    /// `file:line:column` of the primary span, when there is one.
    pub fn location(&self) -> Option<String> {
        let (source, span) = (self.source.as_ref()?, self.span.as_ref()?);
        let (line, col) = source.line_col(span.start);
        Some(format!("{}:{line}:{col}", source.name))
    }

    /// Whether a span sits on a line too long to draw (miette cannot pad past 65535
    /// columns, and such a snippet would be unreadable anyway).
    fn spans_long_line(&self) -> bool {
        const MAX_LINE: usize = 2000;
        let Some(source) = &self.source else {
            return false;
        };
        let lines: Vec<&str> = source.text().split('\n').collect();
        let spans = self
            .span
            .iter()
            .chain(self.related_spans.iter().map(|(_, s)| s));
        spans.into_iter().any(|span| {
            // The snippet shows the spanned lines and one line of context around them.
            let first = source.line_col(span.start).0.saturating_sub(2);
            let last = source.line_col(span.end).0;
            lines
                .iter()
                .skip(first)
                .take(last + 1 - first)
                .any(|l| l.len() > MAX_LINE)
        })
    }

    /// The error without a source snippet: code, message, location, label and hint.
    pub fn render_plain(&self) -> String {
        let mut out = format!("{}\n\n  × {}\n", self.code, self.message);
        if let Some(loc) = self.location() {
            out.push_str(&format!("    at {loc}: {}\n", self.label));
        }
        if let Some(h) = &self.help {
            out.push_str(&format!("  help: {h}\n"));
        }
        out
    }

    /// 1-based (line, column) of the primary span.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        Some(self.source.as_ref()?.line_col(self.span.as_ref()?.start))
    }
}

/// Cuts a message quoting a huge value (a pasted file, a runaway string) to a readable
/// length.
fn shorten(message: String) -> String {
    const MAX: usize = 300;
    if message.chars().count() <= MAX {
        return message;
    }
    let cut: String = message.chars().take(MAX).collect();
    format!("{cut}…")
}

fn clamp(span: Range<usize>, len: usize) -> Range<usize> {
    let start = span.start.min(len);
    let end = span.end.clamp(start, len);
    start..end
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Diagnostic for ConfigError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source
            .as_ref()
            .map(|s| s.text.as_ref() as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.span.clone()?;
        let primary =
            LabeledSpan::new_primary_with_span(Some(self.label.clone()), SourceSpan::from(span));
        let others = self.related_spans.iter().map(|(label, span)| {
            LabeledSpan::new_with_span(Some(label.clone()), SourceSpan::from(span.clone()))
        });
        Some(Box::new(std::iter::once(primary).chain(others)))
    }
}

/// A [`ConfigError`] bound to its named source, for miette's renderers (which print the
/// file name and line:column from a [`NamedSource`]).
#[derive(Debug)]
pub struct Rendered {
    inner: ConfigError,
    named: Option<NamedSource<String>>,
}

impl From<ConfigError> for Rendered {
    fn from(inner: ConfigError) -> Self {
        let named = inner
            .source
            .as_ref()
            .map(|s| NamedSource::new(&*s.name, s.text.to_string()));
        Rendered { inner, named }
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for Rendered {}

impl Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Diagnostic::code(&self.inner)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Diagnostic::help(&self.inner)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.named.as_ref().map(|n| n as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Diagnostic::labels(&self.inner)
    }
}

/// Every problem found in one kiln.toml, in file order. Returned by [`crate::load`].
#[derive(Debug)]
pub struct Diagnostics {
    errors: Vec<Rendered>,
}

impl Diagnostics {
    pub(crate) fn new(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| e.span.as_ref().map(|s| s.start).unwrap_or(0));
        Diagnostics {
            errors: errors.into_iter().map(Rendered::from).collect(),
        }
    }

    /// The individual errors, each a renderable miette diagnostic.
    pub fn errors(&self) -> impl Iterator<Item = &(dyn Diagnostic + Send + Sync)> {
        self.errors
            .iter()
            .map(|e| e as &(dyn Diagnostic + Send + Sync))
    }

    /// The individual errors as plain values (code, message, location, help).
    pub fn items(&self) -> impl Iterator<Item = &ConfigError> {
        self.errors.iter().map(|e| &e.inner)
    }

    /// How many errors.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there are none (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Renders every error as miette draws it (file:line:column, the offending lines,
    /// labels, hint), `width` columns wide, with ANSI colors or not. Deterministic without
    /// colors, which is what snapshot tests use.
    pub fn render(&self, width: usize, colors: bool) -> String {
        let theme = if colors {
            miette::GraphicalTheme::unicode()
        } else {
            miette::GraphicalTheme::unicode_nocolor()
        };
        let handler = miette::GraphicalReportHandler::new_themed(theme)
            .with_width(width)
            .with_links(false);
        let mut out = String::new();
        for e in &self.errors {
            if e.inner.spans_long_line() || handler.render_report(&mut out, e).is_err() {
                out.push_str(&e.inner.render_plain());
            }
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match e.inner.location() {
                Some(loc) => write!(f, "{loc}: {}", e.inner.message)?,
                None => write!(f, "{}", e.inner.message)?,
            }
            if let Some(h) = &e.inner.help {
                write!(f, " (hint: {h})")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// As a single miette diagnostic, its message lists every error as
/// `file:line:column: message (hint: ...)`; use [`Diagnostics::render`] to draw each with
/// its source snippet.
impl Diagnostic for Diagnostics {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("kiln::config::invalid"))
    }
}

/// "did you mean `x`?" for the closest of `candidates` to `word`, if any is close enough.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The candidate closest to `word` (Jaro-Winkler ≥ 0.8, or edit distance ≤ 2).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(word, c);
        let close =
            score >= 0.8 || strsim::levenshtein(word, c) <= 2.min(c.len().saturating_sub(1));
        if close && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// A hint naming the closest candidate if there is one, else listing the candidates.
pub fn suggest<'a>(
    word: &str,
    what: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
) -> String {
    let list = candidates
        .clone()
        .into_iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>();
    match did_you_mean(word, candidates) {
        Some(dym) if list.len() > 1 => format!("{dym} (known {what}: {})", list.join(", ")),
        Some(dym) => dym,
        None if list.is_empty() => format!("there are no {what} here"),
        None => format!("known {what}: {}", list.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_characters() {
        let s = Source::new("k.toml", "a = 1\nbé = 2\n");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(6), (2, 1));
        assert_eq!(s.line_col(9), (2, 3)); // after the two-byte é
    }

    #[test]
    fn closest_finds_typos_and_ignores_unrelated_words() {
        assert_eq!(
            closest("adress", ["address", "admin_user"]),
            Some("address")
        );
        assert_eq!(
            closest("synapsee", ["synapse", "postgres"]),
            Some("synapse")
        );
        assert_eq!(closest("zzz", ["address", "admin_user"]), None);
    }
}
