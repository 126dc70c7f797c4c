//! Counts the GraphQL API's root fields for `/metrics`: each query or mutation field a request
//! resolved, with its outcome (`ok`, or the error's `extensions.code`).

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo,
};
use async_graphql::{ServerResult, Value};

/// The extension that counts root fields.
pub struct FieldMetrics;

impl ExtensionFactory for FieldMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(FieldMetrics)
    }
}

#[async_trait::async_trait]
impl Extension for FieldMetrics {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.path_node.parent.is_some() {
            return next.run(ctx, info).await;
        }
        let kind = if info.parent_type == "MutationRoot" {
            "mutation"
        } else {
            "query"
        };
        let field = info.name.to_owned();
        let result = next.run(ctx, info).await;
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(error) => match error.extensions.as_ref().and_then(|x| x.get("code")) {
                Some(Value::String(code)) => code.clone(),
                _ => "error".to_owned(),
            },
        };
        telemetry::counter(
            "herald_graphql_fields_total",
            "GraphQL root fields resolved, by kind (query or mutation), field and outcome.",
            &[("kind", kind), ("field", &field), ("outcome", &outcome)],
            1,
        );
        result
    }
}
