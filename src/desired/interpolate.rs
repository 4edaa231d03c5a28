//! Compose-style variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}` and `$$`.
//!
//! Bounded: a value may not grow past [`MAX_VALUE_BYTES`], one Compose file's values together
//! past [`MAX_FILE_BYTES`] (see [`Budget`]), and `${` may nest [`MAX_NESTING`] levels deep. Each
//! `$A` may stand for a large `.env` value, so output is checked as it grows, not at the end.

/// Largest value one scalar may interpolate to. Certificates and JSON fit; gigabytes do not.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest total of interpolated values in one Compose file (aliases repeat scalars).
pub const MAX_FILE_BYTES: usize = 16 << 20;
/// Deepest `${A:-${B:-...}}` nesting; a real file uses two or three levels.
pub const MAX_NESTING: usize = 16;
/// Longest excerpt of the input an error message quotes.
const QUOTED_INPUT_CHARS: usize = 80;

/// Bytes of interpolated output left for one Compose file, shared by all its scalars.
#[derive(Debug, Clone)]
pub struct Budget {
    left: usize,
}

impl Budget {
    pub fn per_file() -> Self {
        Self {
            left: MAX_FILE_BYTES,
        }
    }
}

/// Result of interpolating one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpolated {
    pub text: String,
    /// Names of variables that were looked up and whose value was used (in order of first use, no duplicates).
    pub used: Vec<String>,
    /// Variables written with no default (`$X`, `${X}`) that are not set, so they became empty:
    /// Compose warns about each, and so do we.
    pub unset: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("required variable '{var}' is not set: {message}")]
    Required { var: String, message: String },
    #[error("invalid interpolation syntax in {text:?}: {reason}")]
    Syntax { text: String, reason: String },
    #[error("interpolation yields more than {limit} bytes for one value, the limit")]
    ValueTooLong { limit: usize },
    #[error("interpolation yields more than {limit} bytes for the whole file, the limit")]
    FileTooLong { limit: usize },
    #[error("'${{' is nested deeper than {limit} levels, the limit")]
    TooDeep { limit: usize },
}

const DEFAULT_REQUIRED_MESSAGE: &str = "a value is required";

/// Interpolates `input`, resolving variables through `lookup` (`None` means unset).
/// One value on its own: only the per-value limit applies.
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, InterpolateError> {
    interpolate_within(input, lookup, &mut Budget::per_file())
}

/// As [`interpolate`], spending the output's length from `budget` (one per Compose file).
pub fn interpolate_within(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    budget: &mut Budget,
) -> Result<Interpolated, InterpolateError> {
    let mut expander = Expander {
        input,
        lookup,
        used: Vec::new(),
        unset: Vec::new(),
        limit: MAX_VALUE_BYTES.min(budget.left),
        file_limited: budget.left < MAX_VALUE_BYTES,
        nesting: 0,
    };
    let text = expander.expand(input)?;
    budget.left -= text.len();
    Ok(Interpolated {
        text,
        used: expander.used,
        unset: expander.unset,
    })
}

/// Which condition a modifier tests: `-`, `?`, `+` test "set"; `:-`, `:?`, `:+` test "set and non-empty".
#[derive(Clone, Copy)]
enum Test {
    Set,
    NonEmpty,
}

#[derive(Clone, Copy)]
enum Action {
    Default,
    Required,
    Alternate,
}

struct Expander<'a> {
    input: &'a str,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    used: Vec<String>,
    unset: Vec<String>,
    /// Most bytes any output may hold: the per-value limit, or less when the file's budget is.
    limit: usize,
    file_limited: bool,
    /// `${` levels open around the text being expanded.
    nesting: usize,
}

impl Expander<'_> {
    fn expand(&mut self, text: &str) -> Result<String, InterpolateError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            self.push(&mut out, &rest[..pos])?;
            rest = self.expand_dollar(&rest[pos + 1..], &mut out)?;
        }
        self.push(&mut out, rest)?;
        Ok(out)
    }

    /// Appends `piece` unless that takes `out` past the limit: checked before the copy is made.
    fn push(&self, out: &mut String, piece: &str) -> Result<(), InterpolateError> {
        if out.len().saturating_add(piece.len()) > self.limit {
            return Err(if self.file_limited {
                InterpolateError::FileTooLong {
                    limit: MAX_FILE_BYTES,
                }
            } else {
                InterpolateError::ValueTooLong {
                    limit: MAX_VALUE_BYTES,
                }
            });
        }
        out.push_str(piece);
        Ok(())
    }

    /// Expands what follows a `$` into `out` and returns the text left after it.
    fn expand_dollar<'s>(
        &mut self,
        after: &'s str,
        out: &mut String,
    ) -> Result<&'s str, InterpolateError> {
        match after.as_bytes().first() {
            Some(b'$') => {
                self.push(out, "$")?;
                Ok(&after[1..])
            }
            Some(b'{') => {
                if self.nesting >= MAX_NESTING {
                    return Err(InterpolateError::TooDeep { limit: MAX_NESTING });
                }
                let inner = &after[1..];
                let end = closing_brace(inner).ok_or_else(|| self.syntax("unterminated '${'"))?;
                self.nesting += 1;
                let value = self.expand_braced(&inner[..end]);
                self.nesting -= 1;
                self.push(out, &value?)?;
                Ok(&inner[end + 1..])
            }
            _ => {
                let len = name_len(after);
                if len == 0 {
                    // Compose keeps a `$` that starts no variable (`$1`, `5$`) as a literal.
                    self.push(out, "$")?;
                } else {
                    let value = self.lookup_or_empty(&after[..len]);
                    self.push(out, &value)?;
                }
                Ok(&after[len..])
            }
        }
    }

    /// Expands the body of `${...}` (without the braces).
    fn expand_braced(&mut self, body: &str) -> Result<String, InterpolateError> {
        let len = name_len(body);
        if len == 0 {
            return Err(self.syntax(format!("invalid variable name in '${{{}}}'", excerpt(body))));
        }
        let (name, modifier) = body.split_at(len);
        if modifier.is_empty() {
            return Ok(self.lookup_or_empty(name));
        }
        let (test, action, arg) = parse_modifier(modifier).ok_or_else(|| {
            self.syntax(format!(
                "unexpected '{}' after variable name '{}'",
                excerpt(modifier),
                excerpt(name)
            ))
        })?;
        let value = self.lookup(name);
        let present = match test {
            Test::Set => value.is_some(),
            Test::NonEmpty => value.as_deref().is_some_and(|v| !v.is_empty()),
        };
        // Only the branch that is taken gets expanded, so `${A:-${B:?}}` does not fail when A is set.
        match (action, present) {
            (Action::Default, true) | (Action::Required, true) => Ok(value.unwrap_or_default()),
            (Action::Default, false) | (Action::Alternate, true) => self.expand(arg),
            (Action::Alternate, false) => Ok(String::new()),
            (Action::Required, false) => Err(self.required(name, arg)),
        }
    }

    fn required(&mut self, name: &str, arg: &str) -> InterpolateError {
        let message = match self.expand(arg) {
            Ok(message) if message.is_empty() => DEFAULT_REQUIRED_MESSAGE.to_string(),
            Ok(message) => message,
            Err(err) => return err,
        };
        InterpolateError::Required {
            var: name.to_string(),
            message,
        }
    }

    /// Looks `name` up and records it in `used` when it is set.
    fn lookup(&mut self, name: &str) -> Option<String> {
        let value = (self.lookup)(name);
        if value.is_some() && !self.used.iter().any(|used| used == name) {
            self.used.push(name.to_string());
        }
        value
    }

    /// A variable with no default: empty when unset, and remembered as unset.
    fn lookup_or_empty(&mut self, name: &str) -> String {
        self.lookup(name).unwrap_or_else(|| {
            if !self.unset.iter().any(|u| u == name) {
                self.unset.push(name.to_string());
            }
            String::new()
        })
    }

    fn syntax(&self, reason: impl Into<String>) -> InterpolateError {
        InterpolateError::Syntax {
            text: excerpt(self.input),
            reason: reason.into(),
        }
    }
}

/// The input as an error quotes it: a long scalar (or one repeated by aliases) would otherwise
/// be copied whole into every message.
fn excerpt(input: &str) -> String {
    match input.char_indices().nth(QUOTED_INPUT_CHARS) {
        Some((end, _)) => format!("{}...", &input[..end]),
        None => input.to_string(),
    }
}

/// Splits a modifier such as `:-default` into its test, action and argument.
fn parse_modifier(modifier: &str) -> Option<(Test, Action, &str)> {
    let (test, rest) = match modifier.strip_prefix(':') {
        Some(rest) => (Test::NonEmpty, rest),
        None => (Test::Set, modifier),
    };
    let action = match rest.as_bytes().first()? {
        b'-' => Action::Default,
        b'?' => Action::Required,
        b'+' => Action::Alternate,
        _ => return None,
    };
    Some((test, action, &rest[1..]))
}

/// Length in bytes of the variable name (`[A-Za-z_][A-Za-z0-9_]*`) at the start of `text`.
fn name_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => bytes
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count(),
        _ => 0,
    }
}

/// Index of the `}` closing a `${` whose body starts `text`, skipping nested `${...}` and `$$`.
fn closing_brace(text: &str) -> Option<usize> {
    scan_braces(text, 1, |b, depth| b == b'}' && depth == 0)
}

/// The part of a `KEY=VALUE` list item that becomes the key: up to the first `=` outside any
/// `${...}` (`E_${X:-=}=1` has the key `E_${X:-=}`). Whatever it expands to, the key Compose
/// splits off is it or a prefix of it.
pub fn raw_key(item: &str) -> &str {
    scan_braces(item, 0, |b, depth| b == b'=' && depth == 0).map_or(item, |end| &item[..end])
}

/// Index of the first byte for which `stop(byte, depth)` holds, where depth counts the `${`
/// still open (starting at `depth`); `$$` is skipped, and a `}` is seen after it closes one.
fn scan_braces(text: &str, mut depth: usize, stop: impl Fn(u8, usize) -> bool) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'$', Some(b'$')) => i += 1,
            (b'$', Some(b'{')) => {
                depth += 1;
                i += 1;
            }
            (b'}', _) if depth > 0 => {
                depth -= 1;
                if stop(b'}', depth) {
                    return Some(i);
                }
            }
            (b, _) if stop(b, depth) => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn text(input: &str, vars: &[(&str, &str)]) -> String {
        interpolate(input, &env(vars)).unwrap().text
    }

    fn used(input: &str, vars: &[(&str, &str)]) -> Vec<String> {
        interpolate(input, &env(vars)).unwrap().used
    }

    fn error(input: &str, vars: &[(&str, &str)]) -> InterpolateError {
        interpolate(input, &env(vars)).unwrap_err()
    }

    fn is_syntax_error(input: &str) -> bool {
        matches!(error(input, &[]), InterpolateError::Syntax { .. })
    }

    #[test]
    fn text_without_dollar_is_unchanged() {
        assert_eq!(text("plain text: ünïcode", &[]), "plain text: ünïcode");
    }

    #[test]
    fn bare_variable_is_replaced_by_its_value() {
        assert_eq!(text("host=$HOST:80", &[("HOST", "db")]), "host=db:80");
    }

    #[test]
    fn bare_variable_name_ends_at_first_non_name_character() {
        assert_eq!(text("$A-$A_B.", &[("A", "1"), ("A_B", "2")]), "1-2.");
    }

    #[test]
    fn braced_variable_is_replaced_by_its_value() {
        assert_eq!(text("${HOST}name", &[("HOST", "db")]), "dbname");
    }

    #[test]
    fn unset_variable_becomes_empty_string() {
        assert_eq!(text("[$NOPE][${NOPE}]", &[]), "[][]");
    }

    #[test]
    fn default_applies_when_variable_is_unset_with_colon_form() {
        assert_eq!(text("${A:-fallback}", &[]), "fallback");
    }

    #[test]
    fn default_applies_when_variable_is_empty_with_colon_form() {
        assert_eq!(text("${A:-fallback}", &[("A", "")]), "fallback");
    }

    #[test]
    fn default_is_ignored_when_variable_is_nonempty_with_colon_form() {
        assert_eq!(text("${A:-fallback}", &[("A", "v")]), "v");
    }

    #[test]
    fn default_applies_when_variable_is_unset_with_dash_form() {
        assert_eq!(text("${A-fallback}", &[]), "fallback");
    }

    #[test]
    fn default_is_ignored_when_variable_is_empty_with_dash_form() {
        assert_eq!(text("[${A-fallback}]", &[("A", "")]), "[]");
    }

    #[test]
    fn default_may_be_empty_or_contain_special_characters() {
        assert_eq!(text("[${A:-}]", &[]), "[]");
        assert_eq!(text("${A:-a:b-c?d+e {x}", &[]), "a:b-c?d+e {x");
    }

    #[test]
    fn required_fails_when_variable_is_unset_with_colon_form() {
        let expected = InterpolateError::Required {
            var: "A".into(),
            message: "need A".into(),
        };
        assert_eq!(error("${A:?need A}", &[]), expected);
    }

    #[test]
    fn required_fails_when_variable_is_empty_with_colon_form() {
        assert!(matches!(
            error("${A:?need A}", &[("A", "")]),
            InterpolateError::Required { var, .. } if var == "A"
        ));
    }

    #[test]
    fn required_fails_when_variable_is_unset_with_question_form() {
        assert!(matches!(
            error("${A?need A}", &[]),
            InterpolateError::Required { var, .. } if var == "A"
        ));
    }

    #[test]
    fn required_accepts_empty_variable_with_question_form() {
        assert_eq!(text("[${A?need A}]", &[("A", "")]), "[]");
    }

    #[test]
    fn required_yields_value_when_variable_is_set() {
        assert_eq!(text("${A:?need A}", &[("A", "v")]), "v");
    }

    #[test]
    fn required_without_message_uses_default_message() {
        let expected = InterpolateError::Required {
            var: "A".into(),
            message: DEFAULT_REQUIRED_MESSAGE.into(),
        };
        assert_eq!(error("${A:?}", &[]), expected);
        assert_eq!(error("${A?}", &[]), expected);
    }

    #[test]
    fn required_error_message_is_interpolated() {
        let expected = InterpolateError::Required {
            var: "A".into(),
            message: "set A for prod".into(),
        };
        assert_eq!(error("${A:?set A for $ENV}", &[("ENV", "prod")]), expected);
    }

    #[test]
    fn required_error_displays_variable_and_message() {
        assert_eq!(
            error("${A:?need A}", &[]).to_string(),
            "required variable 'A' is not set: need A"
        );
    }

    #[test]
    fn alternate_applies_when_variable_is_nonempty_with_colon_form() {
        assert_eq!(text("${A:+alt}", &[("A", "v")]), "alt");
    }

    #[test]
    fn alternate_is_empty_when_variable_is_empty_with_colon_form() {
        assert_eq!(text("[${A:+alt}]", &[("A", "")]), "[]");
        assert_eq!(text("[${A:+alt}]", &[]), "[]");
    }

    #[test]
    fn alternate_applies_when_variable_is_set_but_empty_with_plus_form() {
        assert_eq!(text("${A+alt}", &[("A", "")]), "alt");
    }

    #[test]
    fn alternate_is_empty_when_variable_is_unset_with_plus_form() {
        assert_eq!(text("[${A+alt}]", &[]), "[]");
    }

    #[test]
    fn nested_default_is_interpolated() {
        assert_eq!(text("${A:-${B:-x}}", &[]), "x");
        assert_eq!(text("${A:-${B:-x}}", &[("B", "b")]), "b");
        assert_eq!(text("${A:-${B:-x}}", &[("A", "a")]), "a");
    }

    #[test]
    fn deeply_nested_interpolation_matches_braces() {
        let vars = [("C", "c")];
        assert_eq!(text("<${A:-${B:-${C}-$C}}>", &vars), "<c-c>");
    }

    #[test]
    fn nested_alternate_is_interpolated() {
        assert_eq!(text("${A:+--flag=${A}}", &[("A", "v")]), "--flag=v");
    }

    #[test]
    fn branch_not_taken_is_not_evaluated() {
        assert_eq!(text("${A:-${B:?missing}}", &[("A", "a")]), "a");
        assert_eq!(used("${A:-$B}", &[("A", "a"), ("B", "b")]), ["A"]);
    }

    #[test]
    fn error_in_nested_default_is_reported() {
        assert!(matches!(
            error("${A:-${B:?missing}}", &[]),
            InterpolateError::Required { var, .. } if var == "B"
        ));
    }

    #[test]
    fn double_dollar_is_a_literal_dollar() {
        assert_eq!(
            text("$$HOME $${HOME} a$$", &[("HOME", "/root")]),
            "$HOME ${HOME} a$"
        );
    }

    #[test]
    fn double_dollar_inside_default_is_a_literal_dollar() {
        assert_eq!(text("${A:-$$}x", &[]), "$x");
        assert_eq!(text("${A:-$${B}}", &[]), "${B}");
    }

    #[test]
    fn dollar_not_starting_a_variable_is_literal() {
        assert_eq!(text("$1 cost: 5$ $-x $.", &[]), "$1 cost: 5$ $-x $.");
    }

    #[test]
    fn unterminated_brace_is_a_syntax_error() {
        assert!(is_syntax_error("${A"));
        assert!(is_syntax_error("${A:-${B}"));
    }

    #[test]
    fn name_starting_with_digit_is_a_syntax_error() {
        assert!(is_syntax_error("${1A}"));
    }

    #[test]
    fn empty_braces_are_a_syntax_error() {
        assert!(is_syntax_error("${}"));
    }

    #[test]
    fn name_with_space_is_a_syntax_error() {
        assert!(is_syntax_error("${A B}"));
    }

    #[test]
    fn unknown_modifier_is_a_syntax_error() {
        assert!(is_syntax_error("${A:}"));
        assert!(is_syntax_error("${A/x/y}"));
    }

    #[test]
    fn syntax_error_names_the_whole_input() {
        let expected = InterpolateError::Syntax {
            text: "image: ${1A}".into(),
            reason: "invalid variable name in '${1A}'".into(),
        };
        assert_eq!(error("image: ${1A}", &[]), expected);
    }

    #[test]
    fn used_lists_set_variables_in_order_of_first_use_without_duplicates() {
        let vars = [("B", "b"), ("A", "a")];
        assert_eq!(used("$B ${A} $B ${A}", &vars), ["B", "A"]);
    }

    #[test]
    fn used_omits_unset_variables() {
        assert_eq!(
            used("$A ${B:-x} ${C-y}", &[("D", "d")]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn used_includes_variables_that_were_only_tested() {
        assert_eq!(used("${A:-x}", &[("A", "")]), ["A"]);
        assert_eq!(used("${S:+on}", &[("S", "secret")]), ["S"]);
    }

    #[test]
    fn used_includes_variables_from_nested_defaults() {
        assert_eq!(used("${A:-${B}}", &[("B", "b")]), ["B"]);
    }
    #[test]
    fn a_value_repeated_past_the_per_value_limit_is_refused_before_it_is_built() {
        let big = "x".repeat(1 << 16);
        let input = "${A}".repeat(1 << 12); // would be 256 MiB
        let err = error(&input, &[("A", &big)]);
        assert_eq!(
            err,
            InterpolateError::ValueTooLong {
                limit: MAX_VALUE_BYTES
            }
        );
        assert!(
            err.to_string().contains(&MAX_VALUE_BYTES.to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_value_just_under_the_limit_is_kept() {
        let half = "x".repeat(MAX_VALUE_BYTES / 2);
        assert_eq!(text("$A$A", &[("A", &half)]).len(), MAX_VALUE_BYTES);
        assert!(matches!(
            error("$A$A-", &[("A", &half)]),
            InterpolateError::ValueTooLong { .. }
        ));
    }

    #[test]
    fn defaults_and_alternates_count_against_the_limit_too() {
        let big = "x".repeat(MAX_VALUE_BYTES / 4 + 1);
        let input = "${A:+${A}${A}}${B:-${A}${A}}";
        assert!(matches!(
            error(input, &[("A", &big)]),
            InterpolateError::ValueTooLong { .. }
        ));
    }

    #[test]
    fn a_file_budget_is_shared_by_its_values() {
        let big = "x".repeat(MAX_VALUE_BYTES);
        let lookup = env(&[("A", &big)]);
        let mut budget = Budget::per_file();
        for _ in 0..MAX_FILE_BYTES / MAX_VALUE_BYTES {
            interpolate_within("$A", &lookup, &mut budget).unwrap();
        }
        assert_eq!(
            interpolate_within("$A", &lookup, &mut budget).unwrap_err(),
            InterpolateError::FileTooLong {
                limit: MAX_FILE_BYTES
            }
        );
        // Text without variables costs its own length, so nothing more fits either.
        assert!(interpolate_within("x", &lookup, &mut budget).is_err());
        assert!(interpolate_within("", &lookup, &mut budget).is_ok());
    }

    #[test]
    fn nesting_up_to_the_limit_is_expanded() {
        let input = format!(
            "{}x{}",
            "${A:-".repeat(MAX_NESTING),
            "}".repeat(MAX_NESTING)
        );
        assert_eq!(text(&input, &[]), "x");
    }

    #[test]
    fn nesting_past_the_limit_is_refused_naming_the_limit() {
        for depth in [MAX_NESTING + 1, 100_000] {
            let input = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
            let started = std::time::Instant::now();
            let err = error(&input, &[]);
            assert_eq!(err, InterpolateError::TooDeep { limit: MAX_NESTING });
            assert!(err.to_string().contains("16 levels"), "{err}");
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
    }

    #[test]
    fn a_syntax_error_quotes_only_the_start_of_a_long_input() {
        let input = format!("${{1{}}}", "y".repeat(100_000));
        let message = error(&input, &[]).to_string();
        assert!(message.len() < 400, "{} bytes", message.len());
    }

    #[test]
    fn the_key_of_a_list_item_ends_at_the_first_equals_sign_outside_braces() {
        assert_eq!(raw_key("A=1"), "A");
        assert_eq!(raw_key("E_${X:-=}=x"), "E_${X:-=}");
        assert_eq!(raw_key("leak.${P:-=}"), "leak.${P:-=}");
        assert_eq!(raw_key("K$${x=1"), "K$${x");
        assert_eq!(raw_key("${A:-${B:-=}}=v"), "${A:-${B:-=}}");
        assert_eq!(raw_key("NOVALUE"), "NOVALUE");
    }
}
