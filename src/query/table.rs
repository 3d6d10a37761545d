//! Plain-text tables for the query CLI, plus the column-width helpers the waterfall shares.

/// Columns are separated by this many spaces.
const GAP: &str = "  ";

/// Renders `rows` under `headers` as aligned columns with a `-` underline below the header.
///
/// A column whose every non-empty value is a number or a duration (`12.3ms`) is right-aligned,
/// so magnitudes line up; other columns are left-aligned. Rows shorter than the header are
/// padded with empty cells; longer rows widen the table.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| printable(cell)).collect())
        .collect();
    let rows = &rows[..];
    let columns = rows.iter().map(Vec::len).fold(headers.len(), usize::max);
    let mut widths = vec![0; columns];
    for (column, header) in headers.iter().enumerate() {
        widths[column] = display_width(header);
    }
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            widths[column] = widths[column].max(display_width(cell));
        }
    }
    let right: Vec<bool> = (0..columns).map(|c| is_numeric_column(rows, c)).collect();

    let mut out = String::new();
    let header_cells: Vec<&str> = (0..columns)
        .map(|c| headers.get(c).copied().unwrap_or(""))
        .collect();
    push_line(&mut out, &header_cells, &widths, &right);
    let underline: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let underline: Vec<&str> = underline.iter().map(String::as_str).collect();
    push_line(&mut out, &underline, &widths, &right);
    for row in rows {
        let cells: Vec<&str> = (0..columns)
            .map(|c| row.get(c).map_or("", String::as_str))
            .collect();
        push_line(&mut out, &cells, &widths, &right);
    }
    out
}

fn push_line(out: &mut String, cells: &[&str], widths: &[usize], right: &[bool]) {
    let mut line = String::new();
    for (column, cell) in cells.iter().enumerate() {
        if column > 0 {
            line.push_str(GAP);
        }
        if right[column] {
            line.push_str(&pad_left(cell, widths[column]));
        } else {
            line.push_str(&pad_right(cell, widths[column]));
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// True when the column has at least one value and every non-empty value is numeric.
fn is_numeric_column(rows: &[Vec<String>], column: usize) -> bool {
    let mut seen = false;
    for row in rows {
        let cell = row.get(column).map_or("", |c| c.trim());
        if cell.is_empty() {
            continue;
        }
        if !is_number_or_duration(cell) {
            return false;
        }
        seen = true;
    }
    seen
}

/// `42`, `-1.5`, `12.3ms`, `+4s`, `950µs`: a decimal number, optionally with a time unit.
fn is_number_or_duration(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, unit) = unsigned.split_at(number_end);
    let mut parts = number.split('.');
    let integer = parts.next().unwrap_or("");
    let fraction = parts.next();
    let digits_ok =
        !integer.is_empty() && parts.next().is_none() && fraction.is_none_or(|f| !f.is_empty());
    digits_ok && ["", "ns", "µs", "us", "ms", "s", "m", "h"].contains(&unit)
}

/// Escapes control characters, so a newline or an escape sequence in the data cannot
/// break the one-line-per-span layout or drive the terminal.
pub(crate) fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Terminal columns the text takes: one per char, which holds for the text we print.
pub(crate) fn display_width(text: &str) -> usize {
    text.chars().count()
}

/// Cuts `text` to at most `width` columns, ending with `…` when anything was cut.
pub(crate) fn truncate(text: &str, width: usize) -> String {
    if display_width(text) <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

pub(crate) fn pad_right(text: &str, width: usize) -> String {
    let fill = width.saturating_sub(display_width(text));
    format!("{text}{}", " ".repeat(fill))
}

pub(crate) fn pad_left(text: &str, width: usize) -> String {
    let fill = width.saturating_sub(display_width(text));
    format!("{}{text}", " ".repeat(fill))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn aligns_text_left_and_numbers_and_durations_right() {
        let rows = vec![
            row(&["frontend", "GET /checkout", "12.3ms", "5"]),
            row(&["payment", "POST /charge", "950µs", "12"]),
        ];
        let table = render_table(&["SERVICE", "OPERATION", "DURATION", "SPANS"], &rows);
        let expected = "\
SERVICE   OPERATION      DURATION  SPANS
--------  -------------  --------  -----
frontend  GET /checkout    12.3ms      5
payment   POST /charge      950µs     12
";
        assert_eq!(table, expected);
    }

    #[test]
    fn one_text_value_makes_the_column_left_aligned() {
        let rows = vec![row(&["a", "10"]), row(&["b", "n/a"])];
        let table = render_table(&["K", "VALUE"], &rows);
        assert_eq!(table, "K  VALUE\n-  -----\na  10\nb  n/a\n");
    }

    #[test]
    fn short_and_long_rows_are_padded_to_the_widest() {
        let rows = vec![row(&["x"]), row(&["y", "1", "extra"])];
        let table = render_table(&["A", "B"], &rows);
        assert_eq!(table, "A  B\n-  -  -----\nx\ny  1  extra\n");
    }

    #[test]
    fn control_characters_cannot_break_a_row() {
        let rows = vec![row(&["a\nb", "1"])];
        assert_eq!(
            render_table(&["K", "N"], &rows),
            "K     N\n----  -\na\\nb  1\n"
        );
    }

    #[test]
    fn header_only_when_there_are_no_rows() {
        assert_eq!(render_table(&["ID", "NAME"], &[]), "ID  NAME\n--  ----\n");
    }

    #[test]
    fn recognises_numbers_and_durations() {
        for yes in [
            "0", "42", "-1.5", "+12.3ms", "950µs", "3us", "1.23s", "10m", "2h",
        ] {
            assert!(is_number_or_duration(yes), "{yes} should be numeric");
        }
        for no in [
            "", "ms", "1.", ".5", "1.2.3", "12 ms", "inf", "NaN", "1e5", "5xs",
        ] {
            assert!(!is_number_or_duration(no), "{no} should not be numeric");
        }
    }

    #[test]
    fn truncate_marks_the_cut_with_an_ellipsis() {
        assert_eq!(truncate("checkout", 8), "checkout");
        assert_eq!(truncate("checkout", 5), "chec…");
        assert_eq!(truncate("µµµµ", 2), "µ…");
        assert_eq!(truncate("abc", 0), "");
    }
}
