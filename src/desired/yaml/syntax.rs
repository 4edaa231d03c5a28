//! The YAML parser's syntax errors, phrased for people: what is wrong, where, and what to check.
//! The parser's own words follow in brackets, so they can still be searched for.

/// `info` as the scanner or parser gave it; `column` (1-based) is where it stopped, on `line`.
pub fn explain(info: &str, column: usize, line: &str) -> String {
    let (what, check) = describe(info);
    // The parser stops where it notices, often past the slip: say where the line starts too.
    let starts = line.len() - line.trim_start_matches([' ', '\t']).len() + 1;
    let at = if starts < column && !line.trim().is_empty() {
        format!("column {column} (the line's text starts at column {starts})")
    } else {
        format!("column {column}")
    };
    format!("not valid YAML at {at}: {what}; {check} (the parser said: {info})")
}

fn describe(info: &str) -> (&'static str, &'static str) {
    let has = |s: &str| info.contains(s);
    if has("tab") {
        (
            "a tab character is used where YAML allows only spaces",
            "indent with spaces, and quote a value that must hold a tab",
        )
    } else if has("did not find expected key") {
        (
            "this line does not fit the mapping it is in: it is not a 'key: value' line at that mapping's indentation",
            "keys of one mapping start in the same column, a value on the lines below its key is indented further than the key, and a list under a key goes on the lines below it ('ports:' then '  - 80')",
        )
    } else if info == "invalid indentation" {
        (
            "this line is indented less than the value it continues",
            "look above for a '[', '{' or quote that is never closed, or indent the continued value further than its key",
        )
    } else if has("mapping values are not allowed") || has("illegal placement of ':'") {
        (
            "a ': ' here would start a mapping where one cannot start",
            "quote a value that holds ': ' (\"a: b\"), and check that this line is indented like the keys it belongs with",
        )
    } else if has("block sequence entries are not allowed") {
        (
            "a list item ('- ') appears where a value was already given",
            "put the list on the lines below its key, each item indented and starting with '- '",
        )
    } else if has("did not find expected '-' indicator") {
        (
            "a line inside a list is not a list item",
            "every item of a list starts with '- ' in the same column; check this line's indentation",
        )
    } else if has("quoted scalar, found unexpected end of stream")
        || has("invalid indentation in quoted scalar")
        || has("found unexpected document indicator")
        || info == "unexpected eof"
    {
        (
            "the file ends inside a quoted string or an open bracket",
            "find the quote, '[' or '{' that is never closed, on this line or above",
        )
    } else if has("flow mapping") || has("flow sequence") || has("in flow construct") {
        (
            "a [...] or {...} on one line is not closed, or two of its items lack a comma between them",
            "check the brackets and commas, and quote an item that contains ',' ']' or '}'",
        )
    } else if has("unknown anchor") {
        (
            "an alias (*name) refers to an anchor (&name) that is not defined above it",
            "define the anchor before its first use, with the same spelling",
        )
    } else if has("duplicated anchor") {
        (
            "the same anchor (&name) is defined twice",
            "give each anchor its own name",
        )
    } else if has("did not find expected node content") || has("unexpected character") {
        (
            "a value starts with a character that cannot start one",
            "quote a value that starts with one of @ ` , ] } or a stray indicator",
        )
    } else if has("simple key") {
        (
            "a key is not followed by ':' on the same line",
            "a key and its ':' must be on one line, and a key is at most 1024 characters",
        )
    } else if has("trailing content after double-quoted scalar") {
        (
            "there is text after the closing quote",
            "put the whole value inside the quotes, or end the line after the closing quote (a comment needs a space before '#')",
        )
    } else if has("quoted scalar") {
        (
            "a quoted string is not valid",
            "in double quotes, a backslash starts an escape (\\n, \\\\, \\\"); use single quotes for text with backslashes",
        )
    } else {
        (
            "the text here is not valid YAML",
            "check this line and the one above it for indentation, quotes and brackets",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    fn error_of(text: &str) -> (usize, String) {
        let err = parse(text).unwrap_err();
        (err.line, err.message)
    }

    #[test]
    fn an_indentation_slip_names_line_column_and_what_to_check() {
        let (line, message) = error_of("services:\n  web:\n    image: a\n   ports: []\n");
        assert_eq!(line, 4, "{message}");
        assert!(
            message.starts_with("not valid YAML at column 9 (the line's text starts at column 4): this line does not fit the mapping it is in"),
            "{message}"
        );
        assert!(
            message.contains("keys of one mapping start in the same column"),
            "{message}"
        );
        assert!(message.contains("(the parser said: "), "{message}");
    }

    #[test]
    fn a_value_with_colon_space_is_told_to_be_quoted() {
        let (line, message) = error_of("services:\n  web:\n    command: echo a: b\n");
        assert_eq!(line, 3, "{message}");
        assert!(
            message.contains("quote a value that holds ': '"),
            "{message}"
        );
    }

    #[test]
    fn a_tab_is_named_as_a_tab() {
        let (line, message) = error_of("services:\n\tweb: {}\n");
        assert_eq!(line, 2, "{message}");
        assert!(message.contains("a tab character"), "{message}");
    }

    #[test]
    fn an_unclosed_quote_points_at_the_quote() {
        let (_, message) = error_of("services:\n  web:\n    image: \"busybox\n");
        assert!(message.contains("is never closed"), "{message}");
    }

    #[test]
    fn a_quote_left_open_in_the_middle_of_a_file_is_named_as_never_closed() {
        let (_, message) =
            error_of("services:\n  web:\n    image: \"busybox\n    restart: always\n");
        assert!(message.contains("is never closed"), "{message}");
    }

    #[test]
    fn text_after_a_closing_quote_is_named() {
        let (line, message) = error_of("services:\n  web:\n    image: \"a\" b\n");
        assert_eq!(line, 3, "{message}");
        assert!(
            message.contains("text after the closing quote"),
            "{message}"
        );
    }

    #[test]
    fn an_unclosed_bracket_is_named() {
        let (line, message) = error_of("services:\n  web:\n    ports: [\"80:80\"\n    image: a\n");
        assert!(line >= 3, "{line}: {message}");
        assert!(message.contains("never closed"), "{message}");
    }

    #[test]
    fn a_list_item_where_a_value_was_given_is_named() {
        let (line, message) = error_of("services:\n  web:\n    ports: a\n    - 80\n");
        assert!(line >= 3, "{line}: {message}");
        assert!(message.contains("list"), "{message}");
    }

    #[test]
    fn an_unknown_alias_is_named() {
        let (line, message) = error_of("a: *nope\n");
        assert_eq!(line, 1, "{message}");
        assert!(message.contains("refers to an anchor"), "{message}");
    }
}
