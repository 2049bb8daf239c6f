//! The lab's modules depend on each other without a cycle (`layout` once used `s3`, which
//! used `layout`): every `crate::<module>` a source file names, outside its tests, must lead
//! to modules that never lead back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|x| x == "rs") && name != "lib" {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            sources.insert(name, code);
        }
    }
    let names: BTreeSet<String> = sources.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (m, code) in &sources {
        let mut deps = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let words: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end].split(',').collect()
            } else {
                vec![rest]
            };
            for w in words {
                let ident: String = w
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if names.contains(&ident) && &ident != m {
                    deps.insert(ident);
                }
            }
        }
        graph.insert(m.clone(), deps);
    }
    graph
}

fn path_back(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    for next in &graph[from] {
        if next == to {
            return Some(vec![next.clone()]);
        }
        if seen.insert(next.clone())
            && let Some(mut p) = path_back(graph, next, to, seen)
        {
            p.insert(0, next.clone());
            return Some(p);
        }
    }
    None
}

#[test]
fn modules_form_no_cycle() {
    let graph = module_graph();
    assert!(graph.contains_key("layout") && graph["lab"].contains("layout"));
    for m in graph.keys() {
        if let Some(p) = path_back(&graph, m, m, &mut BTreeSet::new()) {
            panic!("import cycle: {m} -> {}", p.join(" -> "));
        }
    }
}
