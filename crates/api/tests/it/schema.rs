//! `schema.graphql` at the repository root is the schema the code builds, to the letter.
//! `UPDATE_SCHEMA=1 cargo test -p api` rewrites it after an intended change.

#[test]
fn schema_graphql_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema.graphql");
    let generated = api::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schema.graphql differs from the code; run `UPDATE_SCHEMA=1 cargo test -p api` and review the diff"
    );
}
