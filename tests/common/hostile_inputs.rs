//! Hostile inputs more than one test file feeds the loader (included with `#[path]`, so a test
//! that needs only these does not build the whole engine harness).

/// Nine levels of nine aliases each: 568 bytes that expand to 9^9 (387 million) scalars.
pub fn alias_bomb() -> String {
    let mut text = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(",");
        text.push_str(&format!("{}: &{} [{refs}]\n", pair[1], pair[1]));
    }
    text
}
