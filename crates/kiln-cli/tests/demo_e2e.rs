//! End-to-end: `kiln lab demo --yes --dir DIR` as a user runs it (the built binary, as root,
//! on real lab servers): exit 0, the services server's page verified over HTTP, the second
//! plan empty, and no lab left afterwards. Needs root and the lab's prerequisites
//! (.ci/install-lab.sh); the demo installs Caddy on a server through the lab's apt proxy.

use std::process::Command;

fn require_root() {
    assert!(
        kiln_lab::prereq::is_root(),
        "the demo end-to-end test needs root (after .ci/install-lab.sh)"
    );
}

#[test]
fn lab_demo_deploys_verifies_the_page_and_leaves_no_lab() {
    require_root();
    let kiln = env!("CARGO_BIN_EXE_kiln");
    // A lab name of its own: other labs (tests, benchmarks, a user's demo) may be running.
    let lab = format!("demo-e2e-{}", std::process::id() % 100_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");

    let out = Command::new(kiln)
        .args(["lab", "demo", "--yes", "--lab", &lab, "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Whatever happened, leave nothing behind for the next run.
    let cleanup = || {
        let _ = Command::new(kiln)
            .args(["lab", "down", "--lab", &lab])
            .output();
    };
    if !out.status.success() {
        cleanup();
        panic!(
            "kiln lab demo failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
    }

    // The page was verified from this machine, on the services server.
    let verified = stderr
        .lines()
        .find(|l| l.contains("page verified:"))
        .unwrap_or_else(|| panic!("no page verification in:\n{stderr}"));
    assert!(
        verified.contains(" on services answered 200 \"Hello from services\""),
        "{verified}"
    );
    // The first plan had work to do, and it was applied.
    assert!(
        stdout.contains("services: ") && stdout.contains("+ install package caddy"),
        "first plan:\n{stdout}"
    );
    // The second plan reported zero changes on both hosts, with its duration.
    assert!(
        stderr.contains("zero changes on 2 host(s); the plan took "),
        "{stderr}"
    );
    assert!(
        stdout.contains("services: no changes\n") && stdout.contains("monitoring: no changes\n"),
        "{stdout}"
    );
    // The summary.
    assert!(stdout.contains("kiln lab demo: done in "), "{stdout}");
    assert!(stdout.contains("no-change plan:"), "{stdout}");

    // The repository stays, with its servers recorded and its secrets encrypted.
    let toml = std::fs::read_to_string(dir.join("kiln.toml")).unwrap();
    assert!(toml.contains("host_keys = ["), "{toml}");
    assert!(dir.join("secrets/lab/wireguard_services.age").is_file());
    let mode = std::fs::metadata(dir.join("demo-passphrase.txt"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600);
    // The secret the templates put on the hosts never shows in the demo's output.
    let secret = Command::new(kiln)
        .args(["secrets", "get", "wireguard_services", "--env", "lab"])
        .arg("--config")
        .arg(dir.join("kiln.toml"))
        .arg("--passphrase-file")
        .arg(dir.join("demo-passphrase.txt"))
        .output()
        .unwrap();
    assert!(secret.status.success(), "{secret:?}");
    let secret = String::from_utf8(secret.stdout).unwrap();
    assert!(secret.len() >= 40, "a WireGuard key: {secret:?}");
    assert!(!stdout.contains(&secret) && !stderr.contains(&secret));
    assert!(
        stdout.contains("(content holds a secret: diff hidden)"),
        "{stdout}"
    );

    // No lab of that name is left.
    let labs = kiln_lab::status(&kiln_lab::Roots::default()).unwrap();
    assert!(
        labs.iter().all(|l| l.name != lab),
        "lab {lab} still exists after the demo"
    );
    let status = Command::new(kiln)
        .args(["lab", "status", "--json"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&status.stdout);
    assert!(
        !listed.contains(&format!("\"name\": \"{lab}\"")),
        "{listed}"
    );

    // Refuses to write into the now non-empty folder, before starting any lab.
    let again = Command::new(kiln)
        .args(["lab", "demo", "--yes", "--lab", &lab, "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
