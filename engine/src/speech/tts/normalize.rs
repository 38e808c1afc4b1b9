//! Text normalization for the phone: the caller hears words, not symbols.
//!
//! An LLM writes "$12.50", "3:30 pm", "call 555-123-4567" or "Dr. Smith";
//! espeak-ng would read some of these oddly and some not at all. This turns
//! them into plain English words before phonemizing:
//!
//! - **Numbers and money.** Numbers become words ("1,204" → "one thousand
//!   two hundred four"), decimals are read with "point", ordinals ("21st")
//!   and percentages are spelled out, and currency amounts name the
//!   currency with dollars and cents.
//! - **Phone numbers.** A run of seven or more digits with separators is read
//!   digit by digit, grouped where it was grouped ("five five five, one two
//!   three, ...").
//! - **Times and dates.** Times are read as "three thirty pee em" and "ten oh
//!   five" (with am/pm spelled "ay em", "pee em" so espeak-ng says the
//!   letters); dates (`2026-11-21`, `11/21/2026`) as "November twenty-first,
//!   twenty twenty-six".
//! - **Abbreviations and symbols.** Common abbreviations are expanded, "&",
//!   "@" and "#" become words, and emoji and other symbols are dropped.
//!
//! It never fails: anything it does not recognise passes through as text.

/// Normalizes `text` for speaking.
pub fn normalize(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let mut i = 0;
    while i < tokens.len() {
        // Phone numbers may span tokens: "(555) 123-4567", "+1 555 123 4567".
        if let Some((spoken, used)) = phone_number(&tokens[i..]) {
            out.push(spoken);
            i += used;
            continue;
        }
        // "3:30 pm" / "3 pm"
        if let Some((spoken, used)) = time_of_day(&tokens[i..]) {
            out.push(spoken);
            i += used;
            continue;
        }
        out.push(word(tokens[i]));
        i += 1;
    }
    let joined = out
        .into_iter()
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    joined.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One whitespace-separated token.
fn word(token: &str) -> String {
    // Keep trailing punctuation (it shapes the prosody), normalize the core.
    let (lead, core, trail) = split_punct(token);
    let spoken = if let Some(s) = abbreviation(core) {
        s.to_string()
    } else if let Some(s) = money(core) {
        s
    } else if let Some(s) = date(core) {
        s
    } else if let Some(s) = percent(core) {
        s
    } else if let Some(s) = ordinal(core) {
        s
    } else if let Some(s) = number(core) {
        s
    } else if let Some(s) = hashtag_number(core) {
        s
    } else {
        symbols(core)
    };
    format!("{lead}{spoken}{trail}")
}

/// Splits opening quotes/brackets and closing punctuation off a token.
fn split_punct(token: &str) -> (&str, &str, &str) {
    let start = token
        .char_indices()
        .find(|(_, c)| !matches!(c, '"' | '\'' | '(' | '[' | '“' | '‘'))
        .map_or(token.len(), |(i, _)| i);
    let rest = &token[start..];
    let mut end = rest.len();
    for (i, c) in rest.char_indices().rev() {
        if matches!(
            c,
            '.' | ',' | '!' | '?' | ';' | ':' | '"' | '\'' | ')' | ']' | '”' | '’'
        ) {
            end = i;
        } else {
            break;
        }
    }
    // "Dr." and "e.g." keep their dot as part of the abbreviation.
    let core = &rest[..end];
    let trail = &rest[end..];
    if trail.starts_with('.') && abbreviation(&rest[..end + 1]).is_some() {
        return (&token[..start], &rest[..end + 1], &rest[end + 1..]);
    }
    // Leading quotes are dropped: they are not spoken.
    ("", core, trail)
}

fn abbreviation(w: &str) -> Option<&'static str> {
    Some(match w {
        "Dr." => "Doctor",
        "Mr." => "Mister",
        "Mrs." => "Missus",
        "Ms." => "Miz",
        "St." => "Street",
        "Ave." => "Avenue",
        "Rd." => "Road",
        "Blvd." => "Boulevard",
        "Jr." => "Junior",
        "Sr." => "Senior",
        "Inc." => "Incorporated",
        "Ltd." => "Limited",
        "approx." => "approximately",
        "e.g." => "for example",
        "i.e." => "that is",
        "etc." => "et cetera",
        "vs." => "versus",
        "No." => "number",
        "min." => "minutes",
        "hrs." => "hours",
        "&" => "and",
        "@" => "at",
        "+" => "plus",
        "=" => "equals",
        "%" => "percent",
        // Bare "am"/"pm" are left alone ("I am"): times handle them.
        "a.m." => "ay em",
        "p.m." => "pee em",
        _ => return None,
    })
}

/// Drops characters that are neither letters, digits nor speakable
/// punctuation (emoji, box drawing, stray symbols).
fn symbols(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    for c in w.chars() {
        match c {
            '&' => out.push_str(" and "),
            '@' => out.push_str(" at "),
            '+' => out.push_str(" plus "),
            c if c.is_alphanumeric() || matches!(c, '\'' | '-' | '.' | ',' | '?' | '!') => {
                out.push(c)
            }
            _ => out.push(' '),
        }
    }
    out.trim().to_string()
}

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// An integer in words ("one thousand two hundred four").
pub fn number_words(n: u64) -> String {
    if n < 20 {
        return ONES[n as usize].to_string();
    }
    if n < 100 {
        let t = TENS[(n / 10) as usize];
        return if n.is_multiple_of(10) {
            t.to_string()
        } else {
            format!("{t}-{}", ONES[(n % 10) as usize])
        };
    }
    if n < 1_000 {
        let rest = n % 100;
        let head = format!("{} hundred", ONES[(n / 100) as usize]);
        return if rest == 0 {
            head
        } else {
            format!("{head} {}", number_words(rest))
        };
    }
    for (scale, name) in [
        (1_000_000_000_000u64, "trillion"),
        (1_000_000_000, "billion"),
        (1_000_000, "million"),
        (1_000, "thousand"),
    ] {
        if n >= scale {
            let rest = n % scale;
            let head = format!("{} {name}", number_words(n / scale));
            return if rest == 0 {
                head
            } else {
                format!("{head} {}", number_words(rest))
            };
        }
    }
    unreachable!("every n >= 1000 matches a scale")
}

fn ordinal_words(n: u64) -> String {
    let words = number_words(n);
    let (head, last) = match words.rfind(['-', ' ']) {
        Some(i) => (&words[..=i], &words[i + 1..]),
        None => ("", words.as_str()),
    };
    let last = match last {
        "one" => "first".to_string(),
        "two" => "second".to_string(),
        "three" => "third".to_string(),
        "five" => "fifth".to_string(),
        "eight" => "eighth".to_string(),
        "nine" => "ninth".to_string(),
        "twelve" => "twelfth".to_string(),
        w if w.ends_with('y') => format!("{}ieth", &w[..w.len() - 1]),
        w => format!("{w}th"),
    };
    format!("{head}{last}")
}

/// Parses "1,234" or "1234" (commas only in thousands positions).
fn parse_int(s: &str) -> Option<u64> {
    if s.is_empty() || !s.chars().next()?.is_ascii_digit() {
        return None;
    }
    if s.contains(',') {
        let groups: Vec<&str> = s.split(',').collect();
        if groups[0].is_empty()
            || groups[0].len() > 3
            || groups[1..].iter().any(|g| g.len() != 3)
            || !groups.iter().all(|g| g.chars().all(|c| c.is_ascii_digit()))
        {
            return None;
        }
        return groups.concat().parse().ok();
    }
    if s.len() > 15 || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// "42", "1,204", "-3", "3.14"
fn number(s: &str) -> Option<String> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let spoken = match s.split_once('.') {
        None => number_words(parse_int(s)?),
        Some((int, frac)) => {
            if frac.is_empty() || !frac.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let int = if int.is_empty() { 0 } else { parse_int(int)? };
            let digits: Vec<&str> = frac.bytes().map(|b| ONES[usize::from(b - b'0')]).collect();
            format!("{} point {}", number_words(int), digits.join(" "))
        }
    };
    Some(if neg {
        format!("minus {spoken}")
    } else {
        spoken
    })
}

/// "1st", "22nd", "103rd", "4th"
fn ordinal(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    for suffix in ["st", "nd", "rd", "th"] {
        if let Some(n) = lower.strip_suffix(suffix) {
            return parse_int(n).map(ordinal_words);
        }
    }
    None
}

fn percent(s: &str) -> Option<String> {
    let n = s.strip_suffix('%')?;
    Some(format!("{} percent", number(n)?))
}

/// "#5" → "number five"
fn hashtag_number(s: &str) -> Option<String> {
    let n = s.strip_prefix('#')?;
    Some(format!("number {}", number(n)?))
}

/// "$12.50", "€5", "£3.99", "$1,200", "$0.99"
fn money(s: &str) -> Option<String> {
    let mut chars = s.chars();
    let symbol = chars.next()?;
    let (unit, units, sub, subs) = match symbol {
        '$' => ("dollar", "dollars", "cent", "cents"),
        '€' => ("euro", "euros", "cent", "cents"),
        '£' => ("pound", "pounds", "penny", "pence"),
        _ => return None,
    };
    let amount = chars.as_str();
    let (whole, cents) = match amount.split_once('.') {
        None => (parse_int(amount)?, 0),
        Some((w, c)) => {
            if c.len() != 2 || !c.chars().all(|d| d.is_ascii_digit()) {
                return None;
            }
            (
                if w.is_empty() { 0 } else { parse_int(w)? },
                c.parse().ok()?,
            )
        }
    };
    let whole_words = format!(
        "{} {}",
        number_words(whole),
        if whole == 1 { unit } else { units }
    );
    let cent_words = format!(
        "{} {}",
        number_words(cents),
        if cents == 1 { sub } else { subs }
    );
    Some(match (whole, cents) {
        (_, 0) => whole_words,
        (0, _) => cent_words,
        _ => format!("{whole_words} and {cent_words}"),
    })
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A year as people say it: 2026 → "twenty twenty-six", 2005 → "two
/// thousand five", 1999 → "nineteen ninety-nine".
fn year_words(y: u64) -> String {
    if (2000..2010).contains(&y) || y % 1000 < 10 && y >= 1000 {
        return number_words(y);
    }
    if (1000..10_000).contains(&y) {
        let (hi, lo) = (y / 100, y % 100);
        return if lo == 0 {
            format!("{} hundred", number_words(hi))
        } else if lo < 10 {
            format!("{} oh {}", number_words(hi), number_words(lo))
        } else {
            format!("{} {}", number_words(hi), number_words(lo))
        };
    }
    number_words(y)
}

/// "2026-11-21" (ISO) or "11/21/2026" (US order).
fn date(s: &str) -> Option<String> {
    let parts: Vec<&str>;
    let (y, m, d) = if s.contains('-') {
        parts = s.split('-').collect();
        if parts.len() != 3 || parts[0].len() != 4 {
            return None;
        }
        (parts[0], parts[1], parts[2])
    } else if s.contains('/') {
        parts = s.split('/').collect();
        if parts.len() != 3 || parts[2].len() != 4 {
            return None;
        }
        (parts[2], parts[0], parts[1])
    } else {
        return None;
    };
    let all_digits =
        |p: &str| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit());
    if !(all_digits(y) && all_digits(m) && all_digits(d)) {
        return None;
    }
    let (y, m, d): (u64, usize, u64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(format!(
        "{} {}, {}",
        MONTHS[m - 1],
        ordinal_words(d),
        year_words(y)
    ))
}

/// "3:30 pm", "10:05", "7pm", "7 pm" → words; returns tokens used.
fn time_of_day(tokens: &[&str]) -> Option<(String, usize)> {
    let (_, first, trail) = split_punct(tokens.first()?);
    let lower = first.to_ascii_lowercase();
    // Suffix glued on: "7pm", "3:30pm"
    let (clock, mut suffix, mut used) = if let Some(c) = lower.strip_suffix("pm") {
        (c.to_string(), Some("pee em"), 1)
    } else if let Some(c) = lower.strip_suffix("am") {
        (c.to_string(), Some("ay em"), 1)
    } else {
        (lower.clone(), None, 1)
    };
    let mut trail = trail.to_string();
    if suffix.is_none()
        && let Some(next) = tokens.get(1)
    {
        let (_, n, t) = split_punct(next);
        match n.to_ascii_lowercase().as_str() {
            "pm" | "p.m" | "p.m." => {
                suffix = Some("pee em");
                used = 2;
                trail = t.to_string();
            }
            "am" | "a.m" | "a.m." => {
                suffix = Some("ay em");
                used = 2;
                trail = t.to_string();
            }
            _ => {}
        }
    }
    let (h, m) = match clock.split_once(':') {
        Some((h, m)) => (h, Some(m)),
        None => (clock.as_str(), None),
    };
    if h.is_empty() || h.len() > 2 || !h.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: u64 = h.parse().ok()?;
    let m: Option<u64> = match m {
        Some(m) if m.len() == 2 && m.chars().all(|c| c.is_ascii_digit()) => Some(m.parse().ok()?),
        Some(_) => return None,
        None => None,
    };
    // A bare number is a time only with am/pm after it.
    if m.is_none() && suffix.is_none() {
        return None;
    }
    if h > 23 || m.is_some_and(|m| m > 59) {
        return None;
    }
    let minutes = match m {
        None | Some(0) if suffix.is_some() => String::new(),
        None | Some(0) => " o'clock".to_string(),
        Some(m) if m < 10 => format!(" oh {}", number_words(m)),
        Some(m) => format!(" {}", number_words(m)),
    };
    let suffix = suffix.map(|s| format!(" {s}")).unwrap_or_default();
    Some((format!("{}{minutes}{suffix}{trail}", number_words(h)), used))
}

/// A phone number: seven or more digits in groups joined by `-`, `.`,
/// spaces or parentheses, optionally starting with `+`. Returns the spoken
/// form and how many tokens it used.
fn phone_number(tokens: &[&str]) -> Option<(String, usize)> {
    // "2026-11-21" is a date, not a phone number.
    if let Some(first) = tokens.first()
        && date(split_punct(first).1).is_some()
    {
        return None;
    }
    let mut groups: Vec<String> = Vec::new();
    let mut used = 0;
    let mut trail = "";
    for (i, tok) in tokens.iter().enumerate() {
        let (_, core, t) = split_punct(tok);
        let core = core.trim_start_matches('(');
        let plus = i == 0 && core.starts_with('+');
        let core = core.trim_start_matches('+');
        let parts: Vec<&str> = core
            .split(['-', '.', '(', ')'])
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() || !parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())) {
            break;
        }
        // A lone short number after the phone number is not part of it
        // unless the groups so far look like a phone number in progress.
        if i > 0 && groups.iter().map(String::len).sum::<usize>() >= 10 {
            break;
        }
        if plus {
            groups.push("+".into());
        }
        groups.extend(parts.iter().map(|p| p.to_string()));
        used = i + 1;
        trail = t;
        if !t.is_empty() && t != ")" {
            break;
        }
    }
    let digits: usize = groups.iter().filter(|g| *g != "+").map(String::len).sum();
    // At least seven digits, and more than one group (a plain number
    // like 1234567 is a number) unless it is written with a plus.
    let grouped =
        groups.iter().filter(|g| *g != "+").count() > 1 || groups.first().is_some_and(|g| g == "+");
    if digits < 7 || !grouped {
        return None;
    }
    let spoken: Vec<String> = groups
        .iter()
        .map(|g| {
            if g == "+" {
                "plus".to_string()
            } else {
                g.bytes()
                    .map(|b| ONES[usize::from(b - b'0')])
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        })
        .collect();
    let mut text = spoken.join(", ").replacen("plus, ", "plus ", 1);
    text.push_str(trail.trim_start_matches(')'));
    Some((text, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_spoken_forms() {
        let cases = [
            ("I have 3 cats.", "I have three cats."),
            (
                "It costs $12.50 today.",
                "It costs twelve dollars and fifty cents today.",
            ),
            ("Only $1 left", "Only one dollar left"),
            (
                "That is $1,200.",
                "That is one thousand two hundred dollars.",
            ),
            (
                "Just 99 cents, or $0.99.",
                "Just ninety-nine cents, or ninety-nine cents.",
            ),
            (
                "It's €5 or £3.99",
                "It's five euros or three pounds and ninety-nine pence",
            ),
            (
                "Call 555-123-4567 now",
                "Call five five five, one two three, four five six seven now",
            ),
            (
                "Call (555) 123-4567.",
                "Call five five five, one two three, four five six seven.",
            ),
            (
                "Dial +1 555 123 4567",
                "Dial plus one, five five five, one two three, four five six seven",
            ),
            ("Meet at 3:30 pm.", "Meet at three thirty pee em."),
            ("I am calling at 9 am", "I am calling at nine ay em"),
            ("Open at 10:05", "Open at ten oh five"),
            ("Closes at 7pm", "Closes at seven pee em"),
            ("Lunch at 12:00", "Lunch at twelve o'clock"),
            (
                "On 2026-11-21 we open",
                "On November twenty-first, twenty twenty-six we open",
            ),
            (
                "Due 11/21/2026.",
                "Due November twenty-first, twenty twenty-six.",
            ),
            ("Born 1999-07-04", "Born July fourth, nineteen ninety-nine"),
            ("Since 2005-01-01", "Since January first, two thousand five"),
            ("the 21st floor", "the twenty-first floor"),
            ("the 2nd and 3rd", "the second and third"),
            ("a 15% discount", "a fifteen percent discount"),
            ("pi is 3.14", "pi is three point one four"),
            ("Dr. Smith & Mr. Jones", "Doctor Smith and Mister Jones"),
            ("Ticket #42", "Ticket number forty-two"),
            ("1,000,000 users", "one million users"),
            ("It is -5 outside", "It is minus five outside"),
            ("Great 👍 thanks", "Great thanks"),
            ("Hello!", "Hello!"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "{input}");
        }
    }

    #[test]
    fn number_words_cover_the_scales() {
        assert_eq!(number_words(0), "zero");
        assert_eq!(number_words(40), "forty");
        assert_eq!(number_words(101), "one hundred one");
        assert_eq!(number_words(2_026), "two thousand twenty-six");
        assert_eq!(
            number_words(1_234_567),
            "one million two hundred thirty-four thousand five hundred sixty-seven"
        );
        assert_eq!(ordinal_words(12), "twelfth");
        assert_eq!(ordinal_words(30), "thirtieth");
        assert_eq!(ordinal_words(101), "one hundred first");
    }

    #[test]
    fn odd_input_never_panics() {
        let long = "word ".repeat(2_000);
        for s in [
            "",
            "   ",
            "$",
            "$.",
            "$1.5",
            "12:",
            ":30",
            "99:99 pm",
            "1,23",
            "2026-13-40",
            "#",
            "%",
            "++--",
            "🙂🙂",
            "٣٤٥",
            "１２３",
            "a/b/c",
            "(((",
            "\u{0}",
            long.as_str(),
            "99999999999999999999999",
        ] {
            let _ = normalize(s);
        }
    }
}
