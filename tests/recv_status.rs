//! `anyrecv --status [--json] DEST`: what DEST holds, before anything was received, while a
//! receive into it is interrupted, and after it completed (issue 21's must-show: it parses as
//! JSON with those fields before and after an interrupted receive).

mod support;

use std::path::Path;
use std::process::Command;

fn status(dest: &Path, state: &Path) -> serde_json::Value {
    let out = Command::new(support::bin("anyrecv"))
        .arg("--state-dir")
        .arg(state)
        .args(["--status", "--json"])
        .arg(dest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("--status --json prints one JSON object")
}

#[test]
fn status_tells_what_dest_holds_and_what_was_interrupted() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..300 {
        std::fs::write(src.join(format!("f{i}")), vec![b'x'; 4096 + i]).unwrap();
    }
    let (stream, dest, state) = (t.path().join("s"), t.path().join("d"), t.path().join("state"));
    support::send_to_file(None, &src, &stream).unwrap();
    let plan =
        Command::new(support::bin("anysend")).args(["-q", "-n", "--json"]).arg(&src).output();
    let plan: serde_json::Value = serde_json::from_slice(&plan.unwrap().stdout).unwrap();
    let target = plan["target_id"].as_str().unwrap().to_string();

    // Nothing received yet.
    let s = status(&dest, &state);
    assert!(s["holds"].is_null() && s["interrupted"].is_null(), "{s}");
    assert!(s["dest"].as_str().unwrap().ends_with("/d"), "{s}");

    // A receive killed half way: interrupted, with the token --resume-token prints.
    let bytes = std::fs::read(&stream).unwrap();
    support::recv_killed_at(&[], &bytes, bytes.len() / 2, &dest, &state, true);
    let token = support::resume_token(&dest, &state).expect("interrupted");
    let s = status(&dest, &state);
    assert!(s["holds"].is_null(), "{s}");
    let i = &s["interrupted"];
    assert_eq!(i["target"], target.as_str(), "{s}");
    assert_eq!(i["stream"], plan["stream_id"], "{s}");
    assert!(i["origin"].is_null(), "a full stream: {s}");
    assert_eq!(i["resume_token"], token.as_str(), "{s}");
    assert!(i["next_record"].as_u64().is_some() && i["started"].as_str().unwrap().ends_with('Z'));
    // The sender named the snapshot after its directory (header extension, stream format 1.2).
    assert_eq!(i["target_label"], "src", "{s}");

    // Resumed to the end: DEST holds the target.
    let rest = t.path().join("rest");
    support::send_resumed(&token, None, &src, &rest).unwrap();
    support::recv_from_file(&rest, &dest, &state).unwrap();
    let s = status(&dest, &state);
    assert!(s["interrupted"].is_null(), "{s}");
    let h = &s["holds"];
    assert_eq!(h["target"], target.as_str(), "{s}");
    assert_eq!(h["stream"], plan["stream_id"], "{s}");
    assert!(h["origin"].is_null() && h["completed"].as_str().unwrap().ends_with('Z'), "{s}");
    assert_eq!(h["target_label"], "src", "{s}");
    assert!(h["origin_label"].is_null(), "a full stream: {s}");
    let rest_len = std::fs::metadata(&rest).unwrap().len();
    assert_eq!(h["stream_bytes"], rest_len, "the resumed stream's bytes: {s}");

    // In words, too.
    let out = Command::new(support::bin("anyrecv"))
        .arg("--state-dir")
        .arg(&state)
        .arg("--status")
        .arg(&dest)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("holds: snapshot {target} \"src\""))
            && text.contains(&format!("{rest_len} bytes"))
            && text.contains("interrupted: no"),
        "{text}"
    );
}
