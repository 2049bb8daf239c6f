//! The lab records its servers in kiln.toml's `lab` environment (through
//! `kiln_model::edit`): the file must still load with kiln's model, with the recorded
//! addresses and host keys pinned, comments kept. (Moved from kiln-lab's config_model.rs;
//! the lab's roles now come from the loaded model, whose hosts are sorted by role.)

use std::path::Path;
use std::process::Command;

use kiln_model::edit::LabHost;

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
    let roles: Vec<String> = kiln_model::load(&config)
        .unwrap()
        .environment("lab")
        .expect("lab environment")
        .hosts
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        roles,
        vec!["monitoring".to_string(), "services".to_string()]
    );

    let servers: Vec<LabHost> = roles
        .iter()
        .enumerate()
        .map(|(i, role)| LabHost {
            role: role.clone(),
            address: format!("10.77.9.{}", 11 + i),
            ssh_port: 22,
            admin_user: "kiln".into(),
            host_keys: vec![host_key(&dir, &format!("key_{role}"))],
        })
        .collect();
    kiln_model::edit::record_lab_hosts(&config, &servers).unwrap();

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
        let host = &lab.hosts[&s.role];
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
