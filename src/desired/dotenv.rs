//! `.env` / `env_file` parsing with the rules Docker Compose applies. Values are not interpolated
//! here; [`EnvEntry::literal`] tells the caller which ones Compose would expand.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    pub value: String,
    /// 1-based line where the entry starts.
    pub line: usize,
    /// Single-quoted: taken literally. Other values have `${VAR}` expanded, as Compose does.
    pub literal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct DotenvError {
    pub line: usize,
    pub reason: String,
}

/// Parse the text of a .env / env_file. Returns entries in file order (later duplicates win when the caller folds them into a map).
pub fn parse(text: &str) -> Result<Vec<EnvEntry>, DotenvError> {
    // Editors on Windows may prepend a byte order mark, which would otherwise end up in the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().enumerate().map(|(i, line)| (i + 1, line));
    let mut entries = Vec::new();
    while let Some((line, content)) = lines.next() {
        let content = content.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let (key, raw_value) = split_assignment(content, line)?;
        let literal = raw_value.starts_with('\'');
        let value = parse_value(raw_value, line, &mut lines)?;
        entries.push(EnvEntry {
            key: key.to_string(),
            value,
            line,
            literal,
        });
    }
    Ok(entries)
}

/// Splits `[export ]KEY=VALUE` into a validated key and the raw value with leading whitespace removed.
fn split_assignment(content: &str, line: usize) -> Result<(&str, &str), DotenvError> {
    let content = strip_export(content);
    let (key, value) = content
        .split_once('=')
        .ok_or_else(|| error(line, "expected KEY=VALUE"))?;
    let key = key.trim();
    if !is_valid_key(key) {
        return Err(error(line, format!("invalid variable name '{key}'")));
    }
    Ok((key, value.trim_start()))
}

fn strip_export(content: &str) -> &str {
    match content.strip_prefix("export") {
        Some(rest) if rest.starts_with(char::is_whitespace) => rest.trim_start(),
        _ => content,
    }
}

fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Parses the value that starts at `raw`, reading further lines for a multi-line quoted value.
fn parse_value<'a>(
    raw: &'a str,
    line: usize,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Result<String, DotenvError> {
    let quote = match raw.chars().next() {
        Some(quote @ ('"' | '\'')) => quote,
        _ => return Ok(unquoted_value(raw)),
    };
    let (value, rest) = quoted_value(&raw[1..], quote, lines)
        // The reason leaves the value out: .env files often hold secrets.
        .ok_or_else(|| {
            error(
                line,
                format!("unterminated quoted value (no closing {quote})"),
            )
        })?;
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(value)
    } else {
        Err(error(line, "unexpected text after the closing quote"))
    }
}

fn unquoted_value(raw: &str) -> String {
    let value = raw.split_once(" #").map_or(raw, |(value, _)| value);
    value.trim_end().to_string()
}

/// Reads a quoted value whose opening quote was just before `first`. Returns the value and the
/// rest of the line holding the closing quote, or `None` when the input ends before it.
fn quoted_value<'a>(
    first: &'a str,
    quote: char,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Option<(String, &'a str)> {
    let mut value = String::new();
    let mut segment = first;
    loop {
        if let Some(end) = scan_quoted(segment, quote, &mut value) {
            return Some((value, &segment[end + 1..]));
        }
        value.push('\n');
        segment = lines.next()?.1;
    }
}

/// Appends the content of `segment` up to the closing `quote` to `value`, expanding escapes
/// inside double quotes. Returns the byte index of the closing quote, if the segment holds it.
fn scan_quoted(segment: &str, quote: char, value: &mut String) -> Option<usize> {
    let mut chars = segment.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            _ if c == quote => return Some(i),
            '\\' if quote == '"' => match chars.next() {
                Some((_, escaped)) => push_escape(value, escaped),
                None => value.push('\\'),
            },
            _ => value.push(c),
        }
    }
    None
}

fn push_escape(value: &mut String, escaped: char) {
    match escaped {
        'n' => value.push('\n'),
        't' => value.push('\t'),
        '"' | '\\' => value.push(escaped),
        _ => {
            value.push('\\');
            value.push(escaped);
        }
    }
}

fn error(line: usize, reason: impl Into<String>) -> DotenvError {
    DotenvError {
        line,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str, line: usize) -> EnvEntry {
        EnvEntry {
            key: key.into(),
            value: value.into(),
            line,
            literal: false,
        }
    }

    fn single_value(text: &str) -> String {
        let entries = parse(text).unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries[0].value.clone()
    }

    #[test]
    fn entries_are_returned_in_file_order_with_their_lines() {
        let entries = parse("B=2\nA=1\nB=3\n").unwrap();
        assert_eq!(
            entries,
            [entry("B", "2", 1), entry("A", "1", 2), entry("B", "3", 3)]
        );
    }

    #[test]
    fn empty_text_has_no_entries() {
        assert_eq!(parse("").unwrap(), []);
    }

    #[test]
    fn blank_lines_and_comment_lines_are_ignored() {
        let entries = parse("\n   \n# comment\n  # indented comment\nA=1\n").unwrap();
        assert_eq!(entries, [entry("A", "1", 5)]);
    }

    #[test]
    fn export_prefix_is_ignored() {
        assert_eq!(parse("export A=1").unwrap(), [entry("A", "1", 1)]);
        assert_eq!(parse("export\tA=1").unwrap(), [entry("A", "1", 1)]);
    }

    #[test]
    fn key_starting_with_export_is_not_a_prefix() {
        assert_eq!(parse("exported=1").unwrap(), [entry("exported", "1", 1)]);
        assert_eq!(parse("export=1").unwrap(), [entry("export", "1", 1)]);
    }

    #[test]
    fn whitespace_around_key_and_unquoted_value_is_trimmed() {
        assert_eq!(
            parse("  A  =  some value  ").unwrap(),
            [entry("A", "some value", 1)]
        );
    }

    #[test]
    fn key_may_contain_dots_dashes_and_digits() {
        assert_eq!(parse("_a.b-c9=1").unwrap(), [entry("_a.b-c9", "1", 1)]);
    }

    #[test]
    fn empty_value_is_empty_string() {
        assert_eq!(single_value("A="), "");
        assert_eq!(single_value("A=   "), "");
    }

    #[test]
    fn value_may_contain_equals_signs() {
        assert_eq!(single_value("A=b=c=="), "b=c==");
    }

    #[test]
    fn unquoted_value_ends_at_space_hash() {
        assert_eq!(single_value("A=value # comment"), "value");
    }

    #[test]
    fn hash_without_preceding_space_is_part_of_unquoted_value() {
        assert_eq!(single_value("A=abc#def"), "abc#def");
        assert_eq!(single_value("A=#def"), "#def");
    }

    #[test]
    fn single_quoted_value_is_literal() {
        assert_eq!(single_value(r"A='a\nb $X # c'"), r"a\nb $X # c");
    }

    #[test]
    fn double_quoted_value_keeps_hash_and_surrounding_spaces() {
        assert_eq!(single_value(r#"A=" a # b ""#), " a # b ");
    }

    #[test]
    fn double_quoted_value_expands_escapes() {
        assert_eq!(single_value(r#"A="1\n2\t3\"4\\5""#), "1\n2\t3\"4\\5");
    }

    #[test]
    fn unknown_escape_in_double_quotes_is_kept() {
        assert_eq!(single_value(r#"A="\$X\q""#), r"\$X\q");
    }

    #[test]
    fn double_quoted_value_may_span_lines() {
        let entries = parse("A=\"first\nsecond\n  third\"\nB=2").unwrap();
        assert_eq!(
            entries,
            [entry("A", "first\nsecond\n  third", 1), entry("B", "2", 4)]
        );
    }

    #[test]
    fn comment_may_follow_quoted_value() {
        assert_eq!(single_value("A=\"v\"  # comment"), "v");
        assert_eq!(single_value("A='v' "), "v");
    }

    #[test]
    fn empty_quoted_values_are_empty_strings() {
        assert_eq!(single_value("A=\"\""), "");
        assert_eq!(single_value("A=''"), "");
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        let entries = parse("A=1\r\nB=\"x\"\r\n").unwrap();
        assert_eq!(entries, [entry("A", "1", 1), entry("B", "x", 2)]);
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        assert_eq!(parse("\u{feff}A=1").unwrap(), [entry("A", "1", 1)]);
    }

    #[test]
    fn line_without_equals_is_an_error_naming_the_line() {
        let err = parse("A=1\nFOO\n").unwrap_err();
        assert_eq!(
            err,
            DotenvError {
                line: 2,
                reason: "expected KEY=VALUE".into()
            }
        );
        assert_eq!(err.to_string(), "line 2: expected KEY=VALUE");
    }

    #[test]
    fn invalid_key_is_an_error_naming_the_line_and_key() {
        let err = parse("\n1ABC=x").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("'1ABC'"), "{err}");
    }

    #[test]
    fn key_with_inner_space_or_symbol_is_an_error() {
        assert!(parse("MY KEY=x").is_err());
        assert!(parse("A$B=x").is_err());
        assert!(parse("=x").is_err());
    }

    #[test]
    fn unterminated_double_quote_is_an_error_naming_the_start_line() {
        let err = parse("A=1\nB=\"open\nC=3\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("unterminated"), "{err}");
    }

    #[test]
    fn unterminated_single_quote_is_an_error_naming_the_start_line() {
        let err = parse("\n\nA='open").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.reason.contains("unterminated"), "{err}");
    }

    #[test]
    fn escaped_quote_does_not_terminate_double_quoted_value() {
        assert!(parse(r#"A="open\""#).is_err());
    }

    #[test]
    fn text_after_closing_quote_is_an_error() {
        let err = parse("A=\"v\"x").unwrap_err();
        assert_eq!(err.line, 1);
    }

    #[test]
    fn values_are_not_interpolated() {
        assert_eq!(single_value("A=${B:-x}"), "${B:-x}");
    }
}
