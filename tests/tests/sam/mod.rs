//! The SAM template as CloudFormation sees it: `infra/template.yaml` translated by the
//! pinned aws-sam-translator (`infra/lint.sh` with `NOMMER_LINT_TRANSLATE_ONLY=1`, which
//! installs its venv from PyPI when missing), read as JSON. Shared by the test binaries
//! that read the template (`mod sam;`); each translates once.

#![allow(dead_code)] // each binary uses its own part

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).to_path_buf()
}

/// The translated template (CloudFormation JSON, every intrinsic in its long form).
pub fn translated() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let out = dir.path().join("template.cfn.json");
        let run = std::process::Command::new("bash")
            .arg(root().join("infra/lint.sh"))
            .env("NOMMER_LINT_TRANSLATE_ONLY", "1")
            .env("NOMMER_LINT_OUT", &out)
            .output()
            .expect("bash runs infra/lint.sh");
        assert!(
            run.status.success(),
            "infra/lint.sh could not translate the template (it needs Python 3.10+ and PyPI for its venv):\n{}\n{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).expect("the translation is JSON")
    })
}

/// `(logical id, resource)` for every resource of this type.
pub fn resources_of<'a>(doc: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    doc["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

/// The logical id a `{"Ref": X}` or `{"Fn::GetAtt": [X, ...]}` names.
pub fn referenced(v: &Value) -> Option<&str> {
    if let Some(r) = v.get("Ref").and_then(Value::as_str) {
        return Some(r);
    }
    v.get("Fn::GetAtt").and_then(|a| a.get(0)).and_then(Value::as_str)
}

/// Values of the pseudo parameters for [`eval`].
pub struct Pseudo {
    pub stack_name: String,
    pub stack_uuid: String,
    pub account: String,
    pub region: String,
}

impl Pseudo {
    pub fn new(stack_name: &str, stack_uuid: &str) -> Pseudo {
        Pseudo {
            stack_name: stack_name.into(),
            stack_uuid: stack_uuid.into(),
            account: "123456789012".into(),
            region: "ap-southeast-2".into(),
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::StackName" => self.stack_name.clone(),
            "AWS::StackId" => format!(
                "arn:aws:cloudformation:{}:{}:stack/{}/{}",
                self.region, self.account, self.stack_name, self.stack_uuid
            ),
            "AWS::AccountId" => self.account.clone(),
            "AWS::Region" => self.region.clone(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            _ => return None,
        })
    }
}

/// Evaluates a value built only from literals, pseudo parameters and the string
/// intrinsics (Sub, Join, Split, Select). Anything else (a parameter, another resource's
/// Ref or attribute) is an error naming it: such a name is not known before deploying.
pub fn eval(v: &Value, p: &Pseudo) -> Result<Value, String> {
    let text = |v: &Value| -> Result<String, String> {
        match eval(v, p)? {
            Value::String(s) => Ok(s),
            other => Err(format!("expected a string, got {other}")),
        }
    };
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(v.clone()),
        Value::Array(items) => items
            .iter()
            .map(|i| eval(i, p))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(o) if o.len() == 1 => {
            let (f, arg) = o.iter().next().unwrap();
            match f.as_str() {
                "Ref" => {
                    let name = arg.as_str().unwrap_or_default();
                    p.get(name).map(Value::String).ok_or(format!("depends on {name}"))
                }
                "Fn::Join" => {
                    let sep = arg[0].as_str().ok_or("Join separator")?;
                    let parts = eval(&arg[1], p)?;
                    let parts: Vec<String> = parts
                        .as_array()
                        .ok_or("Join list")?
                        .iter()
                        .map(|x| x.as_str().map(String::from).ok_or("Join item".to_string()))
                        .collect::<Result<_, _>>()?;
                    Ok(Value::String(parts.join(sep)))
                }
                "Fn::Split" => {
                    let sep = arg[0].as_str().ok_or("Split separator")?;
                    let s = text(&arg[1])?;
                    Ok(Value::Array(s.split(sep).map(|x| Value::String(x.into())).collect()))
                }
                "Fn::Select" => {
                    let i = match eval(&arg[0], p)? {
                        Value::Number(n) => n.as_u64().ok_or("Select index")? as usize,
                        Value::String(s) => s.parse().map_err(|_| "Select index")?,
                        _ => return Err("Select index".into()),
                    };
                    let list = eval(&arg[1], p)?;
                    list.get(i).cloned().ok_or(format!("Select {i} out of range"))
                }
                "Fn::Sub" => {
                    let (template, vars) = match arg {
                        Value::String(s) => (s.clone(), serde_json::Map::new()),
                        Value::Array(a) => (
                            a[0].as_str().ok_or("Sub template")?.to_string(),
                            a[1].as_object().cloned().unwrap_or_default(),
                        ),
                        _ => return Err("Sub".into()),
                    };
                    let mut out = String::new();
                    let mut rest = template.as_str();
                    while let Some(at) = rest.find("${") {
                        out.push_str(&rest[..at]);
                        let after = &rest[at + 2..];
                        let end = after.find('}').ok_or("unclosed ${")?;
                        let name = &after[..end];
                        if let Some(lit) = name.strip_prefix('!') {
                            out.push_str("${");
                            out.push_str(lit);
                            out.push('}');
                        } else if let Some(v) = vars.get(name) {
                            out.push_str(&text(v)?);
                        } else {
                            out.push_str(&p.get(name).ok_or(format!("depends on {name}"))?);
                        }
                        rest = &after[end + 1..];
                    }
                    out.push_str(rest);
                    Ok(Value::String(out))
                }
                other => Err(format!("uses {other}")),
            }
        }
        Value::Object(_) => Err(format!("not a name: {v}")),
        Value::Null => Err("null".into()),
    }
}
