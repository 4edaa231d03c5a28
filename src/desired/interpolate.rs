//! Compose-style variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}` and `$$`.

/// Result of interpolating one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpolated {
    pub text: String,
    /// Names of variables that were looked up and whose value was used (in order of first use, no duplicates).
    pub used: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("required variable '{var}' is not set: {message}")]
    Required { var: String, message: String },
    #[error("invalid interpolation syntax in {text:?}: {reason}")]
    Syntax { text: String, reason: String },
}

const DEFAULT_REQUIRED_MESSAGE: &str = "a value is required";

/// Interpolates `input`, resolving variables through `lookup` (`None` means unset).
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, InterpolateError> {
    let mut expander = Expander {
        input,
        lookup,
        used: Vec::new(),
    };
    let text = expander.expand(input)?;
    Ok(Interpolated {
        text,
        used: expander.used,
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
}

impl Expander<'_> {
    fn expand(&mut self, text: &str) -> Result<String, InterpolateError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            rest = self.expand_dollar(&rest[pos + 1..], &mut out)?;
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Expands what follows a `$` into `out` and returns the text left after it.
    fn expand_dollar<'s>(
        &mut self,
        after: &'s str,
        out: &mut String,
    ) -> Result<&'s str, InterpolateError> {
        match after.as_bytes().first() {
            Some(b'$') => {
                out.push('$');
                Ok(&after[1..])
            }
            Some(b'{') => {
                let inner = &after[1..];
                let end = closing_brace(inner).ok_or_else(|| self.syntax("unterminated '${'"))?;
                out.push_str(&self.expand_braced(&inner[..end])?);
                Ok(&inner[end + 1..])
            }
            _ => {
                let len = name_len(after);
                if len == 0 {
                    // Compose keeps a `$` that starts no variable (`$1`, `5$`) as a literal.
                    out.push('$');
                } else {
                    out.push_str(&self.lookup(&after[..len]).unwrap_or_default());
                }
                Ok(&after[len..])
            }
        }
    }

    /// Expands the body of `${...}` (without the braces).
    fn expand_braced(&mut self, body: &str) -> Result<String, InterpolateError> {
        let len = name_len(body);
        if len == 0 {
            return Err(self.syntax(format!("invalid variable name in '${{{body}}}'")));
        }
        let (name, modifier) = body.split_at(len);
        if modifier.is_empty() {
            return Ok(self.lookup(name).unwrap_or_default());
        }
        let (test, action, arg) = parse_modifier(modifier).ok_or_else(|| {
            self.syntax(format!(
                "unexpected '{modifier}' after variable name '{name}'"
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

    fn syntax(&self, reason: impl Into<String>) -> InterpolateError {
        InterpolateError::Syntax {
            text: self.input.to_string(),
            reason: reason.into(),
        }
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
    let bytes = text.as_bytes();
    let mut depth = 1;
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'$', Some(b'$')) => i += 1,
            (b'$', Some(b'{')) => {
                depth += 1;
                i += 1;
            }
            (b'}', _) => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
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
}
