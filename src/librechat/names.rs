//! What a group's or role's name may hold. LibreChat trims names as JavaScript does (which
//! also takes U+FEFF, and not U+0085) and shows them as they are: a name carrying an invisible
//! character looks exactly like another's in the people picker and the role list, so that one
//! team's group could pass for the administrators' own. Such names are refused.

/// Why `name`, as the name of a `what` ("group", "role"), is refused, if it is: empty,
/// surrounding space, or anywhere a character that shows as nothing or as another space.
pub fn check_shown_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.trim() != name {
        return Err(format!(
            "{what} name '{name}' must be non-empty with no surrounding spaces (LibreChat trims it)"
        ));
    }
    let mut previous = None;
    let hidden = name.chars().find(|&c| {
        // An emoji's presentation selector (❤️) is part of the symbol it follows; after a
        // letter, a digit or a space it shows as nothing.
        let styles_symbol = is_variation_selector(c)
            && previous.is_some_and(|p: char| {
                !p.is_ascii()
                    && !p.is_alphanumeric()
                    && !p.is_whitespace()
                    && !is_variation_selector(p)
            });
        previous = Some(c);
        shows_as_nothing_or_space(c) && !styles_symbol
    });
    if let Some(c) = hidden {
        return Err(format!(
            "{what} name contains the invisible character U+{:04X} (or a space other than the plain one): a name that shows like another one is refused",
            u32::from(c)
        ));
    }
    Ok(())
}

/// A character that shows as nothing, or as a space other than the plain one: controls,
/// format characters, Unicode's default-ignorable code points (combining grapheme joiner,
/// variation selectors, Hangul fillers) and the other spaces (no-break, ideographic, ...).
fn shows_as_nothing_or_space(c: char) -> bool {
    c.is_control() || is_format(c) || is_default_ignorable(c) || (c.is_whitespace() && c != ' ')
}

fn is_variation_selector(c: char) -> bool {
    matches!(u32::from(c), 0xFE00..=0xFE0F | 0xE0100..=0xE01EF)
}

/// Default-ignorable code points that are not format characters: shown as nothing.
fn is_default_ignorable(c: char) -> bool {
    matches!(u32::from(c),
        0x034F
        | 0x115F..=0x1160
        | 0x17B4..=0x17B5
        | 0x180B..=0x180F
        | 0x3164
        | 0xFE00..=0xFE0F
        | 0xFFA0
        | 0xFFF0..=0xFFF8
        | 0xE0000..=0xE0FFF)
}

/// Unicode's format characters (general category Cf): invisible, and ignored by eyes but not by
/// comparisons (zero-width spaces and joiners, directional marks and overrides, U+FEFF, tags).
fn is_format(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD
        | 0x0600..=0x0605
        | 0x061C
        | 0x06DD
        | 0x070F
        | 0x0890..=0x0891
        | 0x08E2
        | 0x180E
        | 0x200B..=0x200F
        | 0x202A..=0x202E
        | 0x2060..=0x2064
        | 0x2066..=0x206F
        | 0xFEFF
        | 0xFFF9..=0xFFFB
        | 0x110BD
        | 0x110CD
        | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0001
        | 0xE0020..=0xE007F)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tenant's look-alike of the administrators' `Engineering` group, or of `ADMIN`.
    #[test]
    fn a_name_that_shows_like_another_is_refused() {
        assert!(check_shown_name("group", "Engineering").is_ok());
        assert!(check_shown_name("group", "Research & Development").is_ok());
        assert!(check_shown_name("group", "Équipe données").is_ok());
        assert!(check_shown_name("group", "\u{2764}\u{FE0F} Support").is_ok());
        for look_alike in [
            "Engineering\u{FEFF}",
            "\u{FEFF}Engineering",
            "Engi\u{200B}neering",
            "Engineering\u{200D}",
            "\u{202E}gnireenignE",
            "ADMIN\u{E0041}",
            "Engineering\u{AD}",
            "Engi\u{34F}neering",
            "Engineering\u{FE0F}",
            "Engineering\u{A0}Team",
            "Engineering\u{3164}",
        ] {
            let refused = check_shown_name("group", look_alike);
            assert!(
                refused.as_ref().is_err_and(|e| e.contains("invisible")),
                "{look_alike:?}: {refused:?}"
            );
        }
        assert!(check_shown_name("role", " ANALYST").is_err());
        assert!(check_shown_name("role", "ANALYST\u{3000}").is_err());
        assert!(check_shown_name("role", "AN\u{7}ALYST").is_err());
        assert!(check_shown_name("role", "").is_err());
    }
}
