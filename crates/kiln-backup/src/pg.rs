//! PostgreSQL, as the host's backup mode uses it: row counts of a database's key tables
//! taken in the very transaction snapshot its dump is made from (a read-only repeatable
//! read transaction held open by `psql`, its snapshot exported to `pg_dump --snapshot`),
//! recorded in the dump's snapshot description, and counted again after a restore to
//! verify it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long counting may take before the dump gives up (a count is a full scan).
const COUNT_TIMEOUT: Duration = Duration::from_secs(600);

/// The rows of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCount {
    pub table: String,
    pub rows: u64,
}

/// One SQL statement printing `rows<TAB>table<TAB>count` for each of `tables` that
/// exists in the database (others are skipped), exactly (`count(*)`).
fn count_sql(tables: &[String]) -> String {
    let list = tables
        .iter()
        .map(|t| format!("'{}'", t.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT 'rows', t, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I', t), false, true, '')))[1]::text \
         FROM unnest(ARRAY[{list}]::text[]) AS t WHERE to_regclass(quote_ident(t)) IS NOT NULL;"
    )
}

/// `psql` in the PostgreSQL container, quiet, unaligned, tab-separated, stopping at the
/// first error.
fn psql(container: &str, database: &str) -> Vec<String> {
    [
        "podman",
        "exec",
        "-i",
        container,
        "psql",
        "-X",
        "-At",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-F",
        "\t",
        "-U",
        "postgres",
        "-d",
        database,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn parse_row(line: &str) -> Option<RowCount> {
    let mut f = line.split('\t');
    (f.next() == Some("rows")).then_some(())?;
    let table = f.next()?.to_owned();
    let rows = f.next()?.trim().parse().ok()?;
    Some(RowCount { table, rows })
}

/// A transaction held open in `database` for a dump: its snapshot id and the counts.
pub struct Held {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The exported snapshot, for `pg_dump --snapshot`.
    pub snapshot: String,
    /// The key tables' rows in that snapshot.
    pub rows: Vec<RowCount>,
}

impl Held {
    /// Ends the transaction (after the dump).
    pub fn release(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"COMMIT;\n");
        }
        let _ = self.child.wait();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.stdin.take().is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Opens the transaction in `database` of PostgreSQL container `container` and counts
/// `tables` in it.
pub fn hold(container: &str, database: &str, tables: &[String]) -> Result<Held, String> {
    let what = format!("counting the rows of database {database} (psql in {container})");
    let argv = psql(container, database);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: podman: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let script = format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n\
         SELECT 'snapshot', pg_export_snapshot();\n\
         {}\n\
         SELECT 'end';\n",
        count_sql(tables)
    );
    let fail = |child: &mut Child, message: String| -> String {
        let _ = child.kill();
        let out = stderr_of(child);
        let said = out.trim();
        if said.is_empty() {
            format!("{what}: {message}")
        } else {
            format!("{what}: {message}: it said: {said}")
        }
    };
    if let Err(e) = stdin.write_all(script.as_bytes()).and(stdin.flush()) {
        return Err(fail(&mut child, e.to_string()));
    }
    // Lines as psql prints them, read on a thread so a stuck server times out.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut snapshot = None;
    let mut rows = vec![];
    loop {
        match rx.recv_timeout(COUNT_TIMEOUT) {
            Ok(line) if line == "end" => break,
            Ok(line) => {
                if let Some(id) = line.strip_prefix("snapshot\t") {
                    snapshot = Some(id.trim().to_owned());
                } else if let Some(r) = parse_row(&line) {
                    rows.push(r);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(fail(
                    &mut child,
                    format!("no answer in {} s", COUNT_TIMEOUT.as_secs()),
                ));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(fail(&mut child, "psql ended".into()));
            }
        }
    }
    let Some(snapshot) = snapshot else {
        return Err(fail(&mut child, "no snapshot exported".into()));
    };
    Ok(Held {
        child,
        stdin: Some(stdin),
        snapshot,
        rows,
    })
}

/// Counts `tables` in `database` now (after a restore).
pub fn count_rows(
    container: &str,
    database: &str,
    tables: &[String],
) -> Result<Vec<RowCount>, String> {
    let mut argv = psql(container, database);
    argv.extend(["-c".to_owned(), count_sql(tables)]);
    let out = crate::exec::output(&argv).map_err(|e| {
        format!("counting the rows of database {database} (psql in {container}): {e}")
    })?;
    Ok(out.lines().filter_map(parse_row).collect())
}

/// What a killed child said on stderr.
fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut s);
    }
    let _ = child.wait();
    s
}

/// The description line recording `rows` (`rows: events=12, rooms=3`).
pub fn rows_line(rows: &[RowCount]) -> String {
    let parts: Vec<String> = rows
        .iter()
        .map(|r| format!("{}={}", r.table, r.rows))
        .collect();
    format!("rows: {}", parts.join(", "))
}

/// The row counts a snapshot's description records, if it has a `rows:` line.
pub fn recorded_rows(description: &str) -> Option<Vec<RowCount>> {
    let line = description.lines().find_map(|l| l.strip_prefix("rows:"))?;
    Some(
        line.split(',')
            .filter_map(|p| {
                let (t, n) = p.trim().rsplit_once('=')?;
                Some(RowCount {
                    table: t.to_owned(),
                    rows: n.parse().ok()?,
                })
            })
            .collect(),
    )
}

/// What differs between the recorded counts and those of the restored database.
pub fn differences(recorded: &[RowCount], restored: &[RowCount]) -> Vec<String> {
    recorded
        .iter()
        .filter_map(|r| match restored.iter().find(|x| x.table == r.table) {
            None => Some(format!(
                "table {} is missing (recorded {} rows)",
                r.table, r.rows
            )),
            Some(x) if x.rows != r.rows => Some(format!(
                "table {} has {} rows, the snapshot recorded {}",
                r.table, x.rows, r.rows
            )),
            Some(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(t: &str, n: u64) -> RowCount {
        RowCount {
            table: t.into(),
            rows: n,
        }
    }

    #[test]
    fn rows_line_round_trips_through_a_description() {
        let rows = vec![rc("events", 12), rc("Notes", 0)];
        let d = format!("database synapse of service synapse\n{}", rows_line(&rows));
        assert_eq!(recorded_rows(&d), Some(rows));
        assert_eq!(recorded_rows("database synapse, no counts"), None);
    }

    #[test]
    fn differences_name_the_table_and_both_counts() {
        let recorded = vec![rc("events", 12), rc("rooms", 2), rc("users", 1)];
        let restored = vec![rc("events", 11), rc("users", 1)];
        assert_eq!(
            differences(&recorded, &restored),
            vec![
                "table events has 11 rows, the snapshot recorded 12".to_owned(),
                "table rooms is missing (recorded 2 rows)".to_owned(),
            ]
        );
        assert!(differences(&recorded, &recorded).is_empty());
    }

    #[test]
    fn the_count_quotes_names_and_skips_missing_tables() {
        let sql = count_sql(&["Notes".into(), "it's".into()]);
        assert!(sql.contains("ARRAY['Notes', 'it''s']"), "{sql}");
        assert!(
            sql.contains("to_regclass(quote_ident(t)) IS NOT NULL"),
            "{sql}"
        );
        assert_eq!(parse_row("rows\tNotes\t42"), Some(rc("Notes", 42)));
        assert_eq!(parse_row("snapshot\t0000-1"), None);
    }
}
