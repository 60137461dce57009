//! Least privilege, checked against the code: each binary's AWS SDK calls are derived
//! from its source, mapped to IAM actions, joined with what the platform does on the
//! function's behalf, and compared both ways with the actions its role in the (translated)
//! template grants. A missing action fails (the call would be refused on AWS), and so
//! does an extra one (a grant nothing uses).
//!
//! How the calls are derived (a sound over-approximation, within the limits below):
//! - Every `.rs` file a binary is built from is parsed with `syn`: the binary's own file,
//!   its crate's library (not the crate's other binaries), and every crate under `shared/`
//!   but the ports' fakes (a function crate depends on those and on no other crate of
//!   ours). `#[cfg(test)]`
//!   modules and `#[test]` functions are left out.
//! - An SDK operation is a method call with no arguments whose name is in `OPERATIONS`
//!   (the fluent builders all start as `client.put_item()`): an SDK call that is sent or
//!   presigned (a presigned URL is used with the signer's permissions) counts alike.
//! - The call graph is by name: a call `x.name(a, b)` may reach every method `name` with
//!   two arguments besides `self`, `name(a)` or `Type::name(a)` every function `name` of
//!   that arity, and a function named without being called (`get(handler)`,
//!   `map(Self::f)`) every function of that name (single names in the same file only).
//!   Trait methods are matched by name too, so dynamic dispatch is covered.
//! - Calls inside macro invocations are read when the macro's body parses as
//!   comma-separated expressions (`format!`, `vec!`, `json!`, `tokio::join!`); otherwise
//!   (`tokio::select!`) its tokens are scanned for `.operation()` and for our functions'
//!   names.
//!
//! Limits: a call through a function pointer stored under another name, or code made by
//! a macro of our own, is not seen; and name matching over-approximates (two methods of
//! one name and arity in different types both count), so an action can be demanded that
//! only a namesake needs: the failure message names the function and file that brought
//! it in. Every `.send()` / `.presigned(..)` chain whose operation is not in `OPERATIONS`
//! fails the test, so a new kind of SDK call cannot slip past the table: add it (with
//! the IAM actions it needs) and re-run.

mod sam;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// SDK operation (its Rust method name) -> the IAM actions it needs.
const OPERATIONS: &[(&str, &[&str])] = &[
    // DynamoDB
    ("get_item", &["dynamodb:GetItem"]),
    ("put_item", &["dynamodb:PutItem"]),
    ("update_item", &["dynamodb:UpdateItem"]),
    ("delete_item", &["dynamodb:DeleteItem"]),
    ("query", &["dynamodb:Query"]),
    ("scan", &["dynamodb:Scan"]),
    ("batch_get_item", &["dynamodb:BatchGetItem"]),
    ("batch_write_item", &["dynamodb:BatchWriteItem"]),
    ("describe_table", &["dynamodb:DescribeTable"]),
    // DynamoDB Streams
    ("describe_stream", &["dynamodb:DescribeStream"]),
    ("get_records", &["dynamodb:GetRecords"]),
    ("get_shard_iterator", &["dynamodb:GetShardIterator"]),
    ("list_streams", &["dynamodb:ListStreams"]),
    // S3. Without s3:ListBucket a missing key is 403, not 404, and the code tells
    // "not found" from "refused" by it, so reads and heads need it too.
    ("get_object", &["s3:GetObject", "s3:ListBucket"]),
    ("head_object", &["s3:GetObject", "s3:ListBucket"]),
    ("put_object", &["s3:PutObject"]),
    ("create_multipart_upload", &["s3:PutObject"]),
    ("upload_part", &["s3:PutObject"]),
    ("complete_multipart_upload", &["s3:PutObject"]),
    ("abort_multipart_upload", &["s3:AbortMultipartUpload"]),
    ("list_parts", &["s3:ListMultipartUploadParts"]),
    ("list_objects_v2", &["s3:ListBucket"]),
    ("delete_object", &["s3:DeleteObject"]),
    ("delete_objects", &["s3:DeleteObject"]),
    ("copy_object", &["s3:GetObject", "s3:PutObject"]),
    ("get_bucket_acl", &["s3:GetBucketAcl"]),
    ("upload_part_copy", &["s3:GetObject", "s3:PutObject"]),
    ("head_bucket", &["s3:ListBucket"]),
    ("put_object_acl", &["s3:PutObjectAcl"]),
    // SQS
    ("send_message", &["sqs:SendMessage"]),
    ("send_message_batch", &["sqs:SendMessage"]),
    ("receive_message", &["sqs:ReceiveMessage"]),
    ("delete_message", &["sqs:DeleteMessage"]),
    ("delete_message_batch", &["sqs:DeleteMessage"]),
    ("change_message_visibility", &["sqs:ChangeMessageVisibility"]),
    ("change_message_visibility_batch", &["sqs:ChangeMessageVisibility"]),
    ("get_queue_attributes", &["sqs:GetQueueAttributes"]),
    ("get_queue_url", &["sqs:GetQueueUrl"]),
    // SNS
    ("publish", &["sns:Publish"]),
    ("publish_batch", &["sns:Publish"]),
    // EC2. RunInstances from a launch template with tags and an instance profile also
    // needs CreateTags (at launch), iam:PassRole (the profile's role) and, for the first
    // Spot launch in an account, the Spot service-linked role.
    (
        "run_instances",
        &[
            "ec2:RunInstances",
            "ec2:CreateTags",
            "iam:PassRole",
            "iam:CreateServiceLinkedRole",
        ],
    ),
    ("describe_instances", &["ec2:DescribeInstances"]),
    ("terminate_instances", &["ec2:TerminateInstances"]),
    ("create_tags", &["ec2:CreateTags"]),
    // Secrets Manager
    ("get_secret_value", &["secretsmanager:GetSecretValue"]),
];

/// Actions AWS authorises on no resource but "*".
const NO_RESOURCE_LEVEL: &[&str] = &[
    "ec2:DescribeInstances",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
];

/// Empty calls at the bottom of a `.send()` chain that are not operations.
const NOT_OPERATIONS: &[&str] = &["clone", "as_ref", "to_owned", "borrow"];

/// Functions of ours a binary reaches only through a namesake the name matching cannot
/// tell apart, each checked by reading the call: (binary, file, function, why).
/// Re-check these when the code changes; an entry no longer reached fails the test.
const NAMESAKES: &[(&str, &str, &str, &str)] = &[
    (
        "ingest",
        "shared/aws/src/notify.rs",
        "record",
        "ingest calls tracing's Span::record(field, value), not Notifier::record",
    ),
    (
        "nommer-worker",
        "shared/aws/src/registry.rs",
        "remove",
        "the worker calls HashMap::remove(handle) on its jobs in hand, not the registry's remove",
    ),
    (
        "encodingcom-callback",
        "shared/aws/src/registry.rs",
        "remove",
        "objects.rs copy_source calls percent_encoding's AsciiSet::remove(byte), not the registry's remove",
    ),
    (
        "encodingcom-poller",
        "shared/aws/src/registry.rs",
        "remove",
        "objects.rs copy_source calls percent_encoding's AsciiSet::remove(byte), not the registry's remove",
    ),
];

fn root() -> PathBuf {
    sam::root()
}

fn operation(name: &str) -> Option<&'static [&'static str]> {
    OPERATIONS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

// ---------------------------------------------------------------- reading the code

#[derive(Debug)]
enum Call {
    Method(String, usize),
    /// `name(..)`, or `Prefix::name(..)` (prefix: the type, trait or module named)
    Path {
        name: String,
        arity: usize,
        prefix: Option<String>,
    },
    Named {
        name: String,
        qualified: bool,
    },
}

#[derive(Debug)]
struct Func {
    name: String,
    arity: usize,
    method: bool,
    file: PathBuf,
    /// the type and trait of its `impl` block, and its file's module name
    owners: Vec<String>,
    ops: BTreeSet<String>,
    calls: Vec<Call>,
}

#[derive(Default)]
struct Reader {
    file: PathBuf,
    funcs: Vec<Func>,
    stack: Vec<usize>,
    impls: Vec<Vec<String>>,
    /// `.send()` chains whose operation is not in OPERATIONS: (file, method)
    unknown: Vec<(PathBuf, String)>,
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || (a.path().is_ident("cfg")
                && a.meta
                    .require_list()
                    .is_ok_and(|l| l.tokens.to_string().contains("test")))
            || a.path().segments.last().is_some_and(|s| s.ident == "test")
    })
}

impl Reader {
    fn enter(&mut self, sig: &syn::Signature) {
        let method = matches!(sig.inputs.first(), Some(syn::FnArg::Receiver(_)));
        let mut owners = self.impls.last().cloned().unwrap_or_default();
        owners.push(module_name(&self.file));
        // a crate re-exports items at its root (`nommer_encodingcom::remotes`)
        owners.extend(crate_name(&self.file));
        self.funcs.push(Func {
            owners,
            name: sig.ident.to_string(),
            arity: sig.inputs.len() - usize::from(method),
            method,
            file: self.file.clone(),
            ops: BTreeSet::new(),
            calls: Vec::new(),
        });
        self.stack.push(self.funcs.len() - 1);
    }

    fn top(&mut self) -> Option<&mut Func> {
        let i = *self.stack.last()?;
        Some(&mut self.funcs[i])
    }

    fn scan_tokens(&mut self, text: &str) {
        // `. name ()` as proc_macro2 prints it
        let words: Vec<&str> = text.split_whitespace().collect();
        for w in words.windows(3) {
            if w[0] == "." && w[2] == "()" && operation(w[1]).is_some() {
                let op = w[1].to_string();
                if let Some(f) = self.top() {
                    f.ops.insert(op);
                }
            }
        }
        for w in words.windows(2) {
            if w[1].starts_with('(')
                && w[0]
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                let name = w[0].to_string();
                if let Some(f) = self.top() {
                    f.calls.push(Call::Named { name, qualified: true });
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Reader {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        let mut owners = Vec::new();
        if let syn::Type::Path(t) = &*i.self_ty {
            owners.extend(t.path.segments.last().map(|s| s.ident.to_string()));
        }
        if let Some((_, t, _)) = &i.trait_ {
            owners.extend(t.segments.last().map(|s| s.ident.to_string()));
        }
        self.impls.push(owners);
        syn::visit::visit_item_impl(self, i);
        self.impls.pop();
    }
    fn visit_item_trait(&mut self, t: &'ast syn::ItemTrait) {
        self.impls.push(vec![t.ident.to_string()]);
        syn::visit::visit_item_trait(self, t);
        self.impls.pop();
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if is_test(&f.attrs) {
            return;
        }
        self.enter(&f.sig);
        syn::visit::visit_item_fn(self, f);
        self.stack.pop();
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if is_test(&f.attrs) {
            return;
        }
        self.enter(&f.sig);
        syn::visit::visit_impl_item_fn(self, f);
        self.stack.pop();
    }
    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        self.enter(&f.sig);
        syn::visit::visit_trait_item_fn(self, f);
        self.stack.pop();
    }
    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        let name = m.method.to_string();
        let n = m.args.len();
        if n == 0 && operation(&name).is_some() {
            let op = name.clone();
            if let Some(f) = self.top() {
                f.ops.insert(op);
            }
        }
        if (name == "send" && n == 0) || (name == "presigned" && n == 1) {
            // the innermost call without arguments in the chain is the operation
            let mut r: &syn::Expr = &m.receiver;
            let mut innermost = None;
            while let syn::Expr::MethodCall(mc) = r {
                if mc.args.is_empty() {
                    innermost = Some(mc.method.to_string());
                }
                r = &mc.receiver;
            }
            if let Some(op) = innermost {
                if operation(&op).is_none() && !NOT_OPERATIONS.contains(&op.as_str()) {
                    self.unknown.push((self.file.clone(), op));
                }
            }
        }
        if let Some(f) = self.top() {
            f.calls.push(Call::Method(name, n));
        }
        syn::visit::visit_expr_method_call(self, m);
    }
    fn visit_expr_call(&mut self, c: &'ast syn::ExprCall) {
        if let syn::Expr::Path(p) = &*c.func {
            let segs = &p.path.segments;
            let name = segs.last().unwrap().ident.to_string();
            let prefix = (segs.len() > 1).then(|| segs[segs.len() - 2].ident.to_string());
            let arity = c.args.len();
            if let Some(f) = self.top() {
                f.calls.push(Call::Path { name, arity, prefix });
            }
            for a in &c.args {
                self.visit_expr(a);
            }
        } else {
            syn::visit::visit_expr_call(self, c);
        }
    }
    fn visit_expr_path(&mut self, p: &'ast syn::ExprPath) {
        let segs = &p.path.segments;
        let name = segs.last().unwrap().ident.to_string();
        let qualified = segs.len() > 1;
        if let Some(f) = self.top() {
            f.calls.push(Call::Named { name, qualified });
        }
        syn::visit::visit_expr_path(self, p);
    }
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        use syn::punctuated::Punctuated;
        match mac.parse_body_with(Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated) {
            Ok(exprs) => {
                for e in &exprs {
                    self.visit_expr(e);
                }
            }
            Err(_) => self.scan_tokens(&mac.tokens.to_string()),
        }
    }
}

/// The name a path reaches a file's items by: its module (`store` for store.rs, the
/// folder for mod.rs), or for a crate root (lib.rs, main.rs, src/bin/*.rs) the crate's.
fn module_name(file: &Path) -> String {
    let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
    let parent = |p: &Path| p.file_name().unwrap().to_string_lossy().replace('-', "_");
    let dir = file.parent().unwrap();
    match stem.as_str() {
        "mod" => parent(dir),
        _ if dir.ends_with("src/bin") => parent(dir.parent().unwrap().parent().unwrap()),
        "lib" | "main" => crate_name(file).unwrap_or(stem),
        _ => stem,
    }
}

/// The library name of the crate a file belongs to (`nommer_aws` for shared/aws/src/…).
fn crate_name(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root()).ok()?;
    let parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    match parts.as_slice() {
        [shared, lib, ..] if shared == "shared" => Some(format!("nommer_{lib}")),
        [worker, ..] if worker == "worker" => Some("nommer_worker".into()),
        [functions, name, ..] if functions == "functions" => Some(name.clone()),
        _ => None,
    }
}

fn rs_files(dir: &Path, skip: &[PathBuf], out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
    {
        let p = e.path();
        if skip.contains(&p) {
            continue;
        }
        if p.is_dir() {
            rs_files(&p, skip, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source files of binary `bin` of the crate in `crate_dir`: (its own file, all).
fn binary_sources(crate_dir: &Path, bin: &str) -> (PathBuf, Vec<PathBuf>) {
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    // [[bin]] tables: name = "...", path = "..."
    let mut bins = Vec::new();
    for table in manifest.split("[[bin]]").skip(1) {
        let field = |key: &str| {
            table.lines().take_while(|l| !l.starts_with('[')).find_map(|l| {
                l.trim()
                    .strip_prefix(key)?
                    .trim_start()
                    .strip_prefix('=')
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
        };
        if let (Some(n), Some(p)) = (field("name"), field("path")) {
            bins.push((n, crate_dir.join(p)));
        }
    }
    let main = crate_dir.join("src/main.rs");
    let own = bins
        .iter()
        .find(|(n, _)| n == bin)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| main.clone());
    assert!(own.exists(), "binary {bin}: no {}", own.display());
    let mut skip: Vec<PathBuf> = bins.iter().map(|(_, p)| p.clone()).filter(|p| *p != own).collect();
    if own != main {
        skip.push(main);
    }
    let mut files = Vec::new();
    rs_files(&crate_dir.join("src"), &skip, &mut files);
    for lib in std::fs::read_dir(root().join("shared")).expect("shared/") {
        let src = lib.expect("shared/ entry").path().join("src");
        // the ports' in-memory fakes are compiled for tests only
        rs_files(&src, &[src.join("fakes.rs")], &mut files);
    }
    if !files.contains(&own) {
        files.push(own.clone());
    }
    (own, files)
}

struct Derived {
    /// IAM action -> where it comes from ("put_item in shared/aws/src/store.rs fn put")
    actions: BTreeMap<String, BTreeSet<String>>,
    unknown: Vec<(PathBuf, String)>,
}

fn derive(crate_dir: &Path, bin: &str) -> Derived {
    let (own, files) = binary_sources(crate_dir, bin);
    let mut reader = Reader::default();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        reader.file = f.clone();
        reader.visit_file(&ast);
    }
    let funcs = &reader.funcs;
    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, f) in funcs.iter().enumerate() {
        by_name.entry(f.name.as_str()).or_default().push(i);
    }
    let mut seen = vec![false; funcs.len()];
    let mut namesakes_seen = BTreeSet::new();
    let mut queue: VecDeque<usize> = (0..funcs.len()).filter(|&i| funcs[i].file == own).collect();
    for &i in &queue {
        seen[i] = true;
    }
    while let Some(i) = queue.pop_front() {
        let f = &funcs[i];
        for call in &f.calls {
            let (name, matches): (&str, Box<dyn Fn(&Func) -> bool + '_>) = match call {
                Call::Method(n, a) => (n, Box::new(move |g: &Func| g.method && g.arity == *a)),
                // `f(a)`: a free function; `T::f(a)`: a function of T's impl blocks, trait
                // or module (after `Self::`, `self::`, `super::`, `crate::`: any), also a
                // method called with its receiver first
                Call::Path { name, arity, prefix } => (
                    name,
                    Box::new(move |g: &Func| match prefix.as_deref() {
                        None => !g.method && g.arity == *arity,
                        Some(p) => {
                            (matches!(p, "Self" | "self" | "super" | "crate") || g.owners.iter().any(|o| o == p))
                                && (g.arity == *arity || (g.method && g.arity + 1 == *arity))
                        }
                    }),
                ),
                Call::Named { name, qualified } => {
                    let q = *qualified;
                    let file = f.file.clone();
                    (name, Box::new(move |g: &Func| q || g.file == file))
                }
            };
            for &j in by_name.get(name).map(Vec::as_slice).unwrap_or(&[]) {
                let g = &funcs[j];
                let namesake = NAMESAKES
                    .iter()
                    .any(|(b, file, func, _)| *b == bin && g.name == *func && g.file.ends_with(file));
                if namesake && matches(g) {
                    namesakes_seen.insert(g.name.clone());
                    continue;
                }
                if !seen[j] && matches(g) {
                    seen[j] = true;
                    queue.push_back(j);
                }
            }
        }
    }
    let mut actions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, f) in funcs.iter().enumerate().filter(|(i, _)| seen[*i]) {
        let _ = i;
        for op in &f.ops {
            let file = f.file.strip_prefix(root()).unwrap_or(&f.file).display().to_string();
            for a in operation(op).unwrap() {
                actions
                    .entry(a.to_string())
                    .or_default()
                    .insert(format!("{op}() in {file} fn {}", f.name));
            }
        }
    }
    for (b, file, func, _) in NAMESAKES.iter().filter(|(b, ..)| *b == bin) {
        assert!(
            namesakes_seen.contains(*func),
            "NAMESAKES lists {func} in {file} for {b}, which no call reaches any more: remove it"
        );
    }
    let unknown = reader.unknown.into_iter().filter(|(f, _)| files.contains(f)).collect();
    Derived { actions, unknown }
}

// ---------------------------------------------------------------- reading the template

/// Every action a role's inline policies allow (both branches of an Fn::If).
fn granted(doc: &Value, role: &str) -> (BTreeSet<String>, Vec<String>) {
    fn statements<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Array(a) => a.iter().for_each(|s| statements(s, out)),
            Value::Object(o) if o.contains_key("Fn::If") => {
                let branches = &o["Fn::If"];
                statements(&branches[1], out);
                statements(&branches[2], out);
            }
            Value::Object(o) if o.contains_key("Ref") => {} // AWS::NoValue
            Value::Object(_) => out.push(v),
            _ => {}
        }
    }
    let r = &doc["Resources"][role];
    assert_eq!(r["Type"], "AWS::IAM::Role", "{role} is not a role of the template");
    let mut problems = Vec::new();
    let mut out = BTreeSet::new();
    for policy in r["Properties"]["Policies"].as_array().into_iter().flatten() {
        let mut list = Vec::new();
        statements(&policy["PolicyDocument"]["Statement"], &mut list);
        for s in list {
            if s["Effect"] != "Allow" {
                continue;
            }
            let actions: Vec<String> = match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
                other => panic!("{role}: Action {other}"),
            };
            let resources: Vec<&Value> = match &s["Resource"] {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            if resources.iter().any(|r| *r == "*") {
                for a in actions.iter().filter(|a| !NO_RESOURCE_LEVEL.contains(&a.as_str())) {
                    problems.push(format!(
                        "{role} grants {a} on every resource (\"*\"): name the resource"
                    ));
                }
            }
            for a in &actions {
                if a.contains('*') {
                    problems.push(format!("{role} grants the wildcard action {a}"));
                }
            }
            out.extend(actions);
        }
    }
    (out, problems)
}

/// What Lambda does for function `id` with its role: logs, X-Ray, event-source polling.
fn platform(doc: &Value, id: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |actions: &[&str], why: &str| {
        for a in actions {
            out.entry(a.to_string()).or_default().insert(why.to_string());
        }
    };
    let f = &doc["Resources"][id]["Properties"];
    add(&["logs:CreateLogStream", "logs:PutLogEvents"], "Lambda writes its logs");
    if f["TracingConfig"]["Mode"] == "Active" {
        add(
            &["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            "active tracing (X-Ray)",
        );
    }
    for (esm_id, m) in sam::resources_of(doc, "AWS::Lambda::EventSourceMapping") {
        if sam::referenced(&m["Properties"]["FunctionName"]) != Some(id) {
            continue;
        }
        let source = &m["Properties"]["EventSourceArn"];
        let attr = source["Fn::GetAtt"][1].as_str().unwrap_or_default();
        let kind = sam::referenced(source).map(|s| doc["Resources"][s]["Type"].as_str().unwrap_or_default());
        match (kind, attr) {
            (Some("AWS::SQS::Queue"), _) => add(
                &[
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ChangeMessageVisibility",
                ],
                &format!("{esm_id} polls its queue"),
            ),
            (Some("AWS::DynamoDB::Table"), "StreamArn") => add(
                &[
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                ],
                &format!("{esm_id} polls the table's stream"),
            ),
            other => panic!("{esm_id}: an event source of a kind this test does not know: {other:?}"),
        }
        if m["Properties"]["DestinationConfig"]["OnFailure"]["Destination"].is_object() {
            add(
                &["sqs:SendMessage"],
                &format!("{esm_id} sends failed batches to its on-failure queue"),
            );
        }
    }
    out
}

/// (template logical id, its role, crate dir, binary, platform actions) of each binary.
fn binaries(doc: &Value) -> Vec<(String, String, PathBuf, String, BTreeMap<String, BTreeSet<String>>)> {
    let mut out = Vec::new();
    for (id, f) in sam::resources_of(doc, "AWS::Lambda::Function") {
        let bin = f["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} names no Binary"))
            .to_string();
        let code = sam::eval(&f["Properties"]["Code"]["S3Key"], &sam::Pseudo::new("x", "y")).unwrap();
        let dir = root().join(code.as_str().unwrap());
        let role = sam::referenced(&f["Properties"]["Role"])
            .unwrap_or_else(|| panic!("{id} has no role of the template's"))
            .to_string();
        out.push((id.to_string(), role, dir, bin, platform(doc, id)));
    }
    // the EC2 workers: the boot script downloads the worker binary with the role too
    let mut worker = BTreeMap::new();
    worker.insert(
        "s3:GetObject".to_string(),
        BTreeSet::from(["the boot script downloads the worker binary (WorkerBinaryS3Uri)".to_string()]),
    );
    out.push((
        "the workers".into(),
        "WorkerRole".into(),
        root().join("worker"),
        "nommer-worker".into(),
        worker,
    ));
    out
}

#[test]
fn every_role_grants_exactly_what_its_binary_calls_and_the_platform_does_for_it() {
    let doc = sam::translated();
    let all = binaries(doc);
    assert_eq!(all.len(), 9, "8 functions and the workers");
    let mut failures = Vec::new();
    let mut roles = BTreeSet::new();
    for (id, role, dir, bin, platform) in all {
        assert!(roles.insert(role.clone()), "{id} shares its role {role}");
        let derived = derive(&dir, &bin);
        for (file, op) in &derived.unknown {
            failures.push(format!(
                "{}: `.{op}()` is sent like an SDK call but is not in OPERATIONS: add it with its IAM actions",
                file.strip_prefix(root()).unwrap_or(file).display()
            ));
        }
        assert!(
            !derived.actions.is_empty(),
            "{id} ({bin}): found no SDK call at all, so the derivation is broken"
        );
        let mut needed = derived.actions.clone();
        for (a, why) in platform {
            needed.entry(a).or_default().extend(why);
        }
        let (granted, problems) = granted(doc, &role);
        failures.extend(problems);
        if id != "the workers" {
            let managed = &doc["Resources"][role.as_str()]["Properties"]["ManagedPolicyArns"];
            if !managed.is_null() {
                failures.push(format!(
                    "{id}'s role {role} has managed policies {managed}: name its actions instead"
                ));
            }
        }
        for (action, why) in &needed {
            if !granted.contains(action) {
                failures.push(format!(
                    "{id} ({bin}) needs {action}, which its role {role} does not grant; needed by: {}",
                    why.iter().cloned().collect::<Vec<_>>().join("; ")
                ));
            }
        }
        for action in &granted {
            if !needed.contains_key(action) {
                failures.push(format!(
                    "{id}'s role {role} grants {action}, which neither {bin}'s code nor the platform needs"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_derivation_sees_calls_through_the_shared_crate_and_leaves_out_other_binaries() {
    // The api binary reaches DynamoDB only through nommer_aws::store, and presigns
    // uploads through nommer_aws::objects.
    let api = derive(&root().join("functions/api"), "api");
    assert!(api.actions.contains_key("dynamodb:PutItem"), "{:?}", api.actions.keys());
    assert!(api.actions.contains_key("s3:PutObject"), "{:?}", api.actions.keys());
    // the scaler alone launches instances; notify-deliver does not publish to SNS
    assert!(!api.actions.contains_key("ec2:RunInstances"));
    let scaler = derive(&root().join("functions/scaler"), "scaler");
    assert!(
        scaler.actions.contains_key("ec2:RunInstances"),
        "{:?}",
        scaler.actions.keys()
    );
    let deliver = derive(&root().join("functions/notify"), "notify-deliver");
    let notify = derive(&root().join("functions/notify"), "notify");
    assert!(
        notify.actions.contains_key("sns:Publish"),
        "{:?}",
        notify.actions.keys()
    );
    assert!(!deliver.actions.contains_key("sns:Publish"), "{:?}", deliver.actions);
}
