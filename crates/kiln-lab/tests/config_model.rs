//! The lab records its servers in kiln.toml's `lab` environment: the file must still load with
//! kiln's model, with the recorded addresses and host keys pinned, comments kept.

use std::path::Path;
use std::process::Command;

use kiln_lab::Server;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn host_key(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn recorded_hosts_load_with_the_model_and_comments_stay() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/reference");
    let dir = std::env::temp_dir().join(format!("kiln-lab-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&example, &dir);
    let config = dir.join("kiln.toml");
    let roles = kiln_lab::config::lab_roles(&config).unwrap();
    assert_eq!(
        roles,
        vec!["services".to_string(), "monitoring".to_string()]
    );

    let servers: Vec<Server> = roles
        .iter()
        .enumerate()
        .map(|(i, role)| Server {
            name: role.clone(),
            address: format!("10.77.9.{}", 11 + i).parse().unwrap(),
            ssh_port: 22,
            admin_user: "kiln".into(),
            host_keys: vec![host_key(&dir, &format!("key_{role}"))],
            identity_file: dir.join("id"),
            known_hosts: dir.join("known_hosts"),
        })
        .collect();
    kiln_lab::config::record_hosts(&config, &servers).unwrap();

    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("[environments.lab]                  # throwaway servers on this machine"),
        "{text}"
    );
    assert!(text.contains("os = \"debian13\""), "{text}");
    let model =
        kiln_model::load(&config).unwrap_or_else(|d| panic!("kiln.toml no longer loads: {d:?}"));
    let lab = model.environment("lab").expect("lab environment");
    for s in &servers {
        let host = &lab.hosts[&s.name];
        assert_eq!(host.address.to_string(), s.address.to_string());
        assert_eq!(host.host_keys, s.host_keys);
        assert_eq!(host.admin_user, "kiln");
        assert_eq!(host.ssh_port, 22);
    }
    // Other environments are untouched.
    let original = kiln_model::load(&example.join("kiln.toml")).unwrap();
    assert_eq!(
        format!("{:?}", model.environment("production").unwrap().hosts),
        format!("{:?}", original.environment("production").unwrap().hosts)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
