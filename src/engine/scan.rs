//! Static facts about a recipe, read without running it.

use std::collections::BTreeSet;

use rhai::{ASTNode, Expr, FnCallExpr, Position, Stmt, AST};

/// The params a recipe reads with `param("name", …)`.
#[derive(Debug, Default, PartialEq)]
pub struct DeclaredParams {
    pub names: BTreeSet<String>,
    /// A `param(…)` call whose name is not a string literal: the set cannot be known.
    pub dynamic: bool,
}

pub fn param_names(ast: &AST) -> DeclaredParams {
    let mut out = DeclaredParams::default();
    for (call, _) in calls(ast) {
        if call.name == "param" && call.namespace.is_empty() {
            match call.args.first() {
                Some(Expr::StringConstant(s, _)) => {
                    out.names.insert(s.to_string());
                }
                _ => out.dynamic = true,
            }
        }
    }
    out
}

/// Every function call in a script (its functions included), with its position.
pub fn calls(ast: &AST) -> Vec<(FnCallExpr, Position)> {
    let mut out = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        // A call is an expression, or a statement of its own (`param("x", 1);`).
        match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(c, pos))) => out.push(((**c).clone(), *pos)),
            Some(ASTNode::Stmt(Stmt::FnCall(c, pos))) => out.push(((**c).clone(), *pos)),
            _ => {}
        }
        true
    });
    out
}

/// An `import "path" as alias;` with a literal path.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub path: String,
    pub alias: String,
    pub pos: Position,
}

/// The literal imports of a script, in order.
pub fn imports(ast: &AST) -> Vec<Import> {
    let mut out = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Import(x, pos))) = path.last() {
            if let Expr::StringConstant(s, _) = &x.0 {
                out.push(Import {
                    path: s.to_string(),
                    alias: x.1.name.to_string(),
                    pos: *pos,
                });
            }
        }
        true
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_literal_params_everywhere() {
        let engine = rhai::Engine::new_raw();
        let ast = engine
            .compile(
                r#"
                let a = param("instance_type", "t3.medium");
                fn f() { param("spot", true) }
                if true { let b = param("disk_gb", 30); }
            "#,
            )
            .unwrap();
        let d = param_names(&ast);
        assert!(!d.dynamic);
        assert_eq!(
            d.names.into_iter().collect::<Vec<_>>(),
            ["disk_gb", "instance_type", "spot"]
        );
    }

    #[test]
    fn computed_names_make_the_set_unknowable() {
        let engine = rhai::Engine::new_raw();
        let ast = engine
            .compile(r#"let k = "x"; let v = param(k, 1);"#)
            .unwrap();
        assert!(param_names(&ast).dynamic);
    }
}
