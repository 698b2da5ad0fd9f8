use std::io::Write;

use super::*;

fn deposit(owner: &str, op: &str, amount: u64, balance: u64) -> Event {
    Event::Deposit {
        owner: owner.into(),
        account: "a".into(),
        op: op.into(),
        amount,
        balance,
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn appended_events_reload_for_the_next_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(dir.path(), 3);
    let first = open(&path, "p/1", 1).unwrap();
    assert_eq!(first.last_seq, 1, "only our acquire marker");
    append(&path, &encode(&deposit("p/1", "d1", 100, 100)));
    append(&path, &encode(&deposit("p/1", "d2", 50, 150)));
    let second = open(&path, "p/2", 2).unwrap();
    assert_eq!(second.ledger.balance("a"), 150);
    assert_eq!(second.last_seq, 4, "two markers and two deposits");
    assert_eq!(second.fenced_lines, 0);
}

#[test]
fn torn_last_line_is_ignored_and_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(dir.path(), 0);
    open(&path, "p/1", 1).unwrap();
    append(&path, &encode(&deposit("p/1", "d1", 100, 100)));
    let torn = encode(&deposit("p/1", "d2", 5, 105));
    append(&path, &torn[..torn.len() / 2]);
    let reopened = open(&path, "p/2", 2).unwrap();
    assert_eq!(reopened.ledger.balance("a"), 100);
    // The fragment is gone, so the marker starts on its own line and the log stays valid.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<Event>(l).is_ok()),
        "{text}"
    );
    assert_eq!(open(&path, "p/3", 3).unwrap().ledger.balance("a"), 100);
}

#[test]
fn corrupt_complete_line_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(dir.path(), 1);
    open(&path, "p/1", 1).unwrap();
    append(&path, b"{\"t\":\"deposit\",\"garbage\n");
    append(&path, &encode(&deposit("p/1", "d1", 1, 1)));
    match open(&path, "p/2", 2) {
        Err(JournalError::Corrupt { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected corruption at line 2, got {other:?}"),
    }
}

#[test]
fn inconsistent_balance_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(dir.path(), 1);
    open(&path, "p/1", 1).unwrap();
    append(&path, &encode(&deposit("p/1", "d1", 1, 99)));
    let err = open(&path, "p/2", 2).unwrap_err();
    assert!(err.to_string().contains(":2: corrupt"), "{err}");
}

#[test]
fn overlong_line_is_corruption_not_unbounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(dir.path(), 1);
    open(&path, "p/1", 1).unwrap();
    append(&path, &vec![b'x'; MAX_LINE + 10]);
    assert!(matches!(
        open(&path, "p/2", 2),
        Err(JournalError::Corrupt { line: 2, .. })
    ));
}

#[test]
fn lines_of_a_superseded_owner_are_fenced_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(dir.path(), 2);
    open(&path, "old/1", 1).unwrap();
    append(&path, &encode(&deposit("old/1", "d1", 10, 10)));
    let new = open(&path, "new/1", 2).unwrap();
    assert_eq!(new.ledger.balance("a"), 10);
    // A zombie old owner keeps appending after the takeover.
    append(&path, &encode(&deposit("old/1", "zombie", 5, 15)));
    append(&path, &encode(&deposit("new/1", "d2", 1, 11)));
    let later = open(&path, "third/1", 3).unwrap();
    assert_eq!(later.ledger.balance("a"), 11);
    assert_eq!(later.fenced_lines, 1);
}
