//! Plain aligned text as kubectl prints it: upper-case headers, columns padded to their widest
//! cell and separated by three spaces, no trailing blanks.

/// Rows of text cells under a header.
#[derive(Clone, Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; a cell's line breaks become spaces, so that every row stays one line.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| c.into().replace(['\r', '\n'], " "))
                .collect(),
        );
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table under `title` as a section of a report: `  none` when it has no rows.
    pub fn section(&self, title: &str) -> String {
        let body = if self.is_empty() {
            "  none\n".to_string()
        } else {
            self.render()
        };
        format!("\n{title}:\n{body}")
    }

    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in line.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                if i > 0 {
                    text.push_str("   ");
                }
                text.push_str(cell);
                let pad = widths[i] - cell.chars().count();
                text.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// How long ago `then` was, as kubectl's AGE column says it: `45s`, `12m`, `5h`, `3d`.
pub fn age(then: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let seconds = now.as_second().saturating_sub(then.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_without_trailing_blanks() {
        let mut t = Table::new(&["KIND", "REASON", "COUNT"]);
        t.row(["LibreChatUser", "Reconciled", "2"]);
        t.row(["UserBan", "Banned", "10"]);
        t.row(["UserInvite", "multi\nline", ""]);
        assert_eq!(
            t.render(),
            "KIND            REASON       COUNT\n\
             LibreChatUser   Reconciled   2\n\
             UserBan         Banned       10\n\
             UserInvite      multi line\n"
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now: jiff::Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let ago = |s: i64| age(now - jiff::SignedDuration::from_secs(s), now);
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(119), "119s");
        assert_eq!(ago(600), "10m");
        assert_eq!(ago(3 * 3600), "3h");
        assert_eq!(ago(3 * 86400), "3d");
        assert_eq!(age(now + jiff::SignedDuration::from_secs(9), now), "0s");
    }
}
