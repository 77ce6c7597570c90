//! Reading commands never create a lake, and a path that names none is an error naming it.

use crate::harness::Cairn;

#[test]
fn a_missing_lake_is_an_error_not_an_empty_lake() {
    let c = Cairn::new();
    c.run(&[
        "query",
        "--lake",
        "no-such-lake",
        "SELECT count(*) FROM cloudtrail",
    ])
    .expect_code(2)
    .expect_output("no lake at `no-such-lake`");
    c.run(&["report", "detections", "--lake", "no-such-lake"])
        .expect_code(2)
        .expect_output("no-such-lake");
    assert!(
        !c.path("no-such-lake").exists(),
        "a reading command made the lake"
    );
    // An existing, empty lake is a lake: its tables are empty.
    std::fs::create_dir(c.path("empty")).unwrap();
    c.run(&[
        "query",
        "--lake",
        "empty",
        "SELECT count(*) AS n FROM cloudtrail",
    ])
    .expect_code(0);
}
