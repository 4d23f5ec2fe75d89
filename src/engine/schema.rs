//! The typed handles primitives return and their properties, read from the engine's metadata
//! (the registered getters and the functions' return types) — and a static pass that finds a
//! property read a handle does not have (`vm.public_ipp`), for `check`.
//!
//! The pass is sound rather than clever: a variable has a type only when every assignment to it
//! in the file is a call of a primitive known to return that type. Function parameters, loop
//! and catch variables, variables a closure captures, and anything assigned from elsewhere are
//! unknown, and nothing is said about them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rhai::{ASTNode, Expr, Position, Stmt, AST};
use serde_json::Value;

/// Handle types → their properties; primitives → the handle type they return.
#[derive(Debug, Default)]
pub struct Schema {
    pub props: BTreeMap<String, BTreeSet<String>>,
    /// (`ec2`, `run_instance`, arity) → `Instance`.
    pub returns: BTreeMap<(String, String, usize), String>,
}

/// `&mut crate::cloud::ec2::Instance` → `Instance`.
fn handle(t: &str) -> String {
    let t = t.trim().trim_start_matches("&mut ").trim();
    let t = t
        .strip_prefix("Result<")
        .and_then(|r| r.strip_suffix(", Box<EvalAltResult>>"))
        .unwrap_or(t);
    t.rsplit("::").next().unwrap_or(t).to_string()
}

impl Schema {
    pub fn from_engine(engine: &rhai::Engine) -> Schema {
        let meta: Value = serde_json::from_str(
            &engine
                .gen_fn_metadata_to_json(false)
                .expect("metadata serializes"),
        )
        .expect("metadata is JSON");
        let mut s = Schema::default();
        for f in meta["functions"].as_array().into_iter().flatten() {
            let Some(prop) = f["name"].as_str().and_then(|n| n.strip_prefix("get$")) else {
                continue;
            };
            if let Some(owner) = f["params"].get(0).and_then(|p| p["type"].as_str()) {
                s.props
                    .entry(handle(owner))
                    .or_default()
                    .insert(prop.to_string());
            }
        }
        let mut seen: BTreeMap<(String, String, usize), BTreeSet<String>> = BTreeMap::new();
        for (ns, m) in meta["modules"].as_object().into_iter().flatten() {
            for f in m["functions"].as_array().into_iter().flatten() {
                let (Some(name), Some(n)) = (f["name"].as_str(), f["numParams"].as_u64()) else {
                    continue;
                };
                let ret = handle(f["returnType"].as_str().unwrap_or("()"));
                seen.entry((ns.clone(), name.to_string(), n as usize))
                    .or_default()
                    .insert(ret);
            }
        }
        for (key, rets) in seen {
            // Every overload of that arity must agree, on a type that has properties.
            if let [one] = &rets.into_iter().collect::<Vec<_>>()[..] {
                if s.props.contains_key(one) {
                    s.returns.insert(key, one.clone());
                }
            }
        }
        s
    }

    /// Every property name of every handle (for hints at run time).
    pub fn all_props(&self) -> BTreeSet<&str> {
        self.props.values().flatten().map(String::as_str).collect()
    }
}

/// A property read that cannot work: where, what, and the hint.
#[derive(Debug, PartialEq)]
pub struct BadProperty {
    pub pos: Position,
    pub message: String,
    pub hint: String,
}

/// The type a call expression returns, when it is a primitive with a known handle type.
fn call_type(
    schema: &Schema,
    aliases: &BTreeSet<String>,
    own: &BTreeSet<String>,
    e: &Expr,
) -> Option<String> {
    let Expr::FnCall(call, _) = e else {
        return None;
    };
    let ns = if call.namespace.is_empty() {
        String::new()
    } else {
        call.namespace.root().to_string()
    };
    if ns.is_empty() && own.contains(call.name.as_str()) {
        return None;
    }
    if !ns.is_empty() && aliases.contains(&ns) {
        return None;
    }
    schema
        .returns
        .get(&(ns, call.name.to_string(), call.args.len()))
        .cloned()
}

/// Property reads in `ast` on variables of a known handle type that the type does not have.
/// `aliases`: the file's import aliases (their functions are scripts, not primitives).
pub fn bad_properties(schema: &Schema, ast: &AST, aliases: &BTreeSet<String>) -> Vec<BadProperty> {
    let own: BTreeSet<String> = ast.iter_functions().map(|f| f.name.to_string()).collect();
    // name → Some(type) while every write agrees; None once any write is unknown.
    let mut types: HashMap<String, Option<String>> = HashMap::new();
    let write = |types: &mut HashMap<String, Option<String>>, name: &str, t: Option<String>| {
        let entry = types.entry(name.to_string()).or_insert_with(|| t.clone());
        if *entry != t {
            *entry = None;
        }
    };
    for f in ast.iter_functions() {
        for p in &f.params {
            write(&mut types, p, None);
        }
    }
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Stmt(Stmt::Var(x, ..))) => {
                let t = call_type(schema, aliases, &own, &x.1);
                write(&mut types, x.0.name.as_str(), t);
            }
            Some(ASTNode::Stmt(Stmt::Assignment(x))) => {
                if let Expr::Variable(v, ..) = &x.1.lhs {
                    let t = if x.0.is_op_assignment() {
                        None
                    } else {
                        call_type(schema, aliases, &own, &x.1.rhs)
                    };
                    write(&mut types, v.1.as_str(), t);
                }
            }
            Some(ASTNode::Stmt(Stmt::For(x, _))) => {
                write(&mut types, x.0.name.as_str(), None);
                if let Some(c) = &x.1 {
                    write(&mut types, c.name.as_str(), None);
                }
            }
            Some(ASTNode::Stmt(Stmt::TryCatch(x, _))) => {
                if let Expr::Variable(v, ..) = &x.expr {
                    write(&mut types, v.1.as_str(), None);
                }
            }
            Some(ASTNode::Stmt(Stmt::Share(x))) => {
                for (ident, _) in x.iter() {
                    write(&mut types, ident.name.as_str(), None);
                }
            }
            _ => {}
        }
        true
    });

    let mut out = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let Some(ASTNode::Expr(e @ Expr::Dot(x, ..))) = path.last() else {
            return true;
        };
        // The right side of an enclosing `.` or `[]` is not an object of its own.
        if let Some(ASTNode::Expr(Expr::Dot(p, ..) | Expr::Index(p, ..))) =
            path.len().checked_sub(2).and_then(|i| path.get(i))
        {
            if std::ptr::eq(&p.rhs, *e) {
                return true;
            }
        }
        let ty = match &x.lhs {
            Expr::Variable(v, ..) if v.2.is_empty() => types.get(v.1.as_str()).cloned().flatten(),
            other => call_type(schema, aliases, &own, other),
        };
        let Some(ty) = ty else { return true };
        let (prop, pos) = match &x.rhs {
            Expr::Property(p, pos) => (p.2.to_string(), *pos),
            Expr::Dot(i, ..) | Expr::Index(i, ..) => match &i.lhs {
                Expr::Property(p, pos) => (p.2.to_string(), *pos),
                _ => return true,
            },
            _ => return true, // a method call
        };
        let Some(props) = schema.props.get(&ty) else {
            return true;
        };
        if !props.contains(&prop) {
            let hint = crate::suggest::did_you_mean(&prop, props.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| {
                    format!(
                        "`{ty}` has: {}",
                        props.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                });
            out.push(BadProperty {
                pos,
                message: format!("`{ty}` has no property `{prop}`"),
                hint,
            });
        }
        true
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::Ui;

    fn schema() -> Schema {
        Schema::from_engine(&crate::engine::build_engine(Ui::detect(true), None))
    }

    fn bad(code: &str) -> Vec<String> {
        let ast = crate::engine::parser().compile(code).unwrap();
        bad_properties(&schema(), &ast, &BTreeSet::new())
            .into_iter()
            .map(|b| {
                format!(
                    "{}:{} {} ({})",
                    b.pos.line().unwrap(),
                    b.pos.position().unwrap(),
                    b.message,
                    b.hint
                )
            })
            .collect()
    }

    #[test]
    fn primitives_return_their_handles() {
        let s = schema();
        assert_eq!(
            s.returns
                .get(&("ec2".into(), "run_instance".into(), 2))
                .map(String::as_str),
            Some("Instance")
        );
        assert!(s.props["Instance"].contains("public_ip"));
        // Every handle a primitive returns is a type with properties (no spelling drift).
        for t in s.returns.values() {
            assert!(s.props.contains_key(t), "{t}");
        }
    }

    #[test]
    fn a_misspelt_property_of_a_known_handle_is_found() {
        let found = bad(
            "let vm = ec2::run_instance(\"app\", #{});\nvm = ec2::wait_until_running(vm);\nprint(vm.public_ipp);\n",
        );
        assert_eq!(
            found,
            ["3:10 `Instance` has no property `public_ipp` (did you mean `public_ip`?)"]
        );
        // Straight on a call, and behind an index or a further property.
        assert_eq!(bad("let v = ec2::default_vpc().cidrr;\n").len(), 1);
        assert!(bad("let vm = ec2::run_instance(\"a\", #{});\nlet x = vm.tags.Name;\n").is_empty());
    }

    #[test]
    fn nothing_is_said_where_the_type_is_not_certain() {
        // Reassigned to a map, a parameter, a loop variable, a captured one: unknown.
        for code in [
            "let x = ec2::default_vpc();\nx = #{ foo: 1 };\nprint(x.foo);\n",
            "fn f(vm) { vm.anything }\n",
            "for vm in ec2::instances(#{}) { print(vm.anything); }\n",
            "let vm = ec2::default_vpc();\nlet g = || { vm = #{ a: 1 }; };\nprint(vm.a);\n",
            "let m = #{ a: 1 };\nprint(m.b);\n",
        ] {
            assert!(bad(code).is_empty(), "{code}: {:?}", bad(code));
        }
    }
}
