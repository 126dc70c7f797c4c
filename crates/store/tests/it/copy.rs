//! Rows written with `COPY` (`store::copy`, a replay's shadow fill) arrive in Postgres exactly
//! as given: text with the characters the format escapes, NULLs apart from empty strings,
//! numbers at their limits, booleans; and a bad row fails the statement and leaves the
//! transaction usable for its rollback.

use store::copy::CopyRows;
use store::{EventStore, Store, TxConn};

use crate::support;

type Row = (String, Option<String>, i64, Option<i64>, bool);

#[tokio::test]
async fn postgres_copied_rows_arrive_as_written() {
    let test = support::postgres().await;
    let Store::Postgres(pg) = &test.store else {
        unreachable!()
    };
    sqlx::query(
        "CREATE TABLE copied (id TEXT PRIMARY KEY, note TEXT, n BIGINT NOT NULL, m BIGINT, \
         flag BOOLEAN NOT NULL)",
    )
    .execute(pg.pool())
    .await
    .unwrap();
    let rows: Vec<Row> = vec![
        ("a".into(), Some("tab\there".into()), i64::MIN, None, true),
        (
            "b".into(),
            Some("line\nbreak\r\nand \\N".into()),
            i64::MAX,
            Some(0),
            false,
        ),
        ("c".into(), Some(String::new()), -1, Some(-7), true),
        ("d".into(), None, 0, None, false),
        ("e\\.".into(), Some("\\.\n\\.".into()), 42, Some(42), true),
        ("短信".into(), Some("验证码 1234 ✓".into()), 1, None, false),
    ];
    let mut copy = CopyRows::default();
    for (id, note, n, m, flag) in &rows {
        copy.text(id)
            .optional_text(note.as_deref())
            .int(*n)
            .optional_int(*m)
            .bool(*flag)
            .end_row();
    }
    let mut tx = test.store.begin().await.unwrap();
    let TxConn::Postgres(conn) = tx.conn() else {
        unreachable!()
    };
    let written = copy
        .copy_into(conn, "copied", "id, note, n, m, flag")
        .await
        .unwrap();
    assert_eq!(written, rows.len() as u64);
    tx.commit().await.unwrap();
    let mut read: Vec<Row> = sqlx::query_as("SELECT id, note, n, m, flag FROM copied")
        .fetch_all(pg.pool())
        .await
        .unwrap();
    read.sort();
    let mut expected = rows.clone();
    expected.sort();
    assert_eq!(read, expected);

    // A row that breaks a constraint fails the whole statement; the transaction rolls back and
    // the connection goes on working.
    let mut again = CopyRows::default();
    again.text("z").null().int(1).null().bool(true).end_row();
    again.text("a").null().int(1).null().bool(true).end_row();
    let mut tx = test.store.begin().await.unwrap();
    let TxConn::Postgres(conn) = tx.conn() else {
        unreachable!()
    };
    let error = again
        .copy_into(conn, "copied", "id, note, n, m, flag")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("duplicate key"), "{error}");
    tx.rollback().await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM copied")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert_eq!(count, rows.len() as i64);
    // Nothing to write: no statement at all.
    let mut tx = test.store.begin().await.unwrap();
    let TxConn::Postgres(conn) = tx.conn() else {
        unreachable!()
    };
    assert_eq!(
        CopyRows::default()
            .copy_into(conn, "no_such_table", "x")
            .await
            .unwrap(),
        0
    );
    tx.commit().await.unwrap();
    test.cleanup().await;
}
