//! The API reference at `GET /reference`: the OpenAPI document rendered once at start into one
//! HTML page. Rendered on the server, with no script: it works offline, from the binary alone,
//! and under the console's strict policy unchanged. Every operation is a `<details>` element
//! whose `id` is its `operationId`, so a link can point at one; every schema has its own
//! section (`#schema-<name>`) that the operations' types link to.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Extension;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::escape;

/// The rendered page, built once at start.
#[derive(Clone)]
pub struct Reference(pub Bytes);

/// The methods an OpenAPI path item can hold, in the order the page lists them.
const METHODS: [&str; 8] = [
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

impl Reference {
    /// The page for `doc` (an OpenAPI 3.1 document as JSON).
    pub fn render(doc: &Value) -> Self {
        Self(Bytes::from(page(doc)))
    }
}

/// The reference page.
#[utoipa::path(get, path = "/reference", tag = "meta", security(()),
    responses((status = 200, description = "This API's reference, rendered from the OpenAPI document", body = String, content_type = "text/html")))]
pub async fn serve(Extension(reference): Extension<Reference>) -> Response {
    // The page is shared, not copied, per request.
    let mut response = reference.0.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// One operation of the document.
struct Operation<'a> {
    path: &'a str,
    method: &'a str,
    body: &'a Value,
}

impl Operation<'_> {
    fn id(&self) -> String {
        self.body["operationId"]
            .as_str()
            .map_or_else(|| format!("{}-{}", self.method, self.path), str::to_owned)
    }
}

/// The operations of `doc` by tag (untagged ones under `other`), each tag's in path order.
fn by_tag(doc: &Value) -> BTreeMap<&str, Vec<Operation<'_>>> {
    let mut tags: BTreeMap<&str, Vec<Operation<'_>>> = BTreeMap::new();
    let Some(paths) = doc["paths"].as_object() else {
        return tags;
    };
    for (path, item) in paths {
        for method in METHODS {
            let Some(body) = item.get(method) else {
                continue;
            };
            let tag = body["tags"][0].as_str().unwrap_or("other");
            tags.entry(tag)
                .or_default()
                .push(Operation { path, method, body });
        }
    }
    tags
}

fn page(doc: &Value) -> String {
    let title = escape(doc["info"]["title"].as_str().unwrap_or("API"));
    let version = escape(doc["info"]["version"].as_str().unwrap_or(""));
    let tags = by_tag(doc);
    let mut nav = String::from("<ul role=\"list\"><li><a href=\"#overview\">Overview</a></li>");
    for (tag, operations) in &tags {
        let _ = write!(
            nav,
            "<li><a href=\"#tag-{id}\">{name} <span class=\"count\">{count}</span></a></li>",
            id = escape(tag),
            name = escape(tag),
            count = operations.len()
        );
    }
    nav.push_str("<li><a href=\"#schemas\">Schemas</a></li></ul>");

    let mut main = overview(doc, &title, &version);
    for (tag, operations) in &tags {
        let _ = write!(
            main,
            "<section class=\"tag\" id=\"tag-{id}\" aria-labelledby=\"tag-{id}-title\">\
             <h2 id=\"tag-{id}-title\">{id}</h2>",
            id = escape(tag)
        );
        for operation in operations {
            main.push_str(&render_operation(doc, operation));
        }
        main.push_str("</section>");
    }
    main.push_str(&schemas(doc));

    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <title>API reference · {title}</title>\n\
         <link rel=\"icon\" href=\"/assets/icon.svg\" type=\"image/svg+xml\">\n\
         <link rel=\"stylesheet\" href=\"/assets/console.css\">\n</head>\n\
         <body class=\"reference\">\n\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\n\
         <header class=\"top\">\n<a class=\"brand\" href=\"/\">{title}</a>\n\
         <span class=\"muted\">API reference {version}</span>\n\
         <a class=\"push\" href=\"/api/v1/openapi.json\">OpenAPI document</a>\n</header>\n\
         <div class=\"shell\">\n<nav class=\"side\" aria-label=\"Reference\">\
         <h2 class=\"nav-heading\">Contents</h2>{nav}</nav>\n\
         <main id=\"main\" tabindex=\"-1\">\n{main}\n</main>\n</div>\n</body>\n</html>\n"
    )
}

fn overview(doc: &Value, title: &str, version: &str) -> String {
    let mut out = format!(
        "<section id=\"overview\" aria-labelledby=\"overview-title\">\
         <h1 id=\"overview-title\">{title} API <span class=\"muted\">{version}</span></h1>{}",
        paragraphs(doc["info"]["description"].as_str().unwrap_or(""))
    );
    out.push_str(
        "<h2>Authentication</h2><p>An operation names the schemes it accepts; \
         schemes listed together are all required.</p><dl class=\"facts\">",
    );
    if let Some(schemes) = doc["components"]["securitySchemes"].as_object() {
        for (name, scheme) in schemes {
            let kind = match (scheme["type"].as_str(), scheme["scheme"].as_str()) {
                (Some("http"), Some(s)) => format!("HTTP {s}"),
                (Some("apiKey"), _) => format!(
                    "{} <code>{}</code>",
                    escape(scheme["in"].as_str().unwrap_or("")),
                    escape(scheme["name"].as_str().unwrap_or(""))
                ),
                (Some(other), _) => escape(other),
                (None, _) => String::new(),
            };
            let _ = write!(
                out,
                "<dt><code>{}</code></dt><dd>{kind}. {}</dd>",
                escape(name),
                inline(scheme["description"].as_str().unwrap_or(""))
            );
        }
    }
    out.push_str("</dl></section>");
    out
}

fn render_operation(doc: &Value, operation: &Operation<'_>) -> String {
    let body = operation.body;
    let summary = body["summary"].as_str().unwrap_or("");
    let first = summary
        .split(". ")
        .next()
        .unwrap_or("")
        .trim_end_matches('.');
    let mut out = format!(
        "<details class=\"op\" id=\"{id}\"><summary><span class=\"verb verb-{m}\">{upper}</span> \
         <code>{path}</code> <span class=\"muted\">{first}</span></summary><div class=\"op-body\">{text}",
        id = escape(&operation.id()),
        m = operation.method,
        upper = operation.method.to_uppercase(),
        path = escape(operation.path),
        first = inline(first),
        text = paragraphs(&format!(
            "{summary}\n\n{}",
            body["description"].as_str().unwrap_or("")
        )),
    );
    let security = body.get("security").or_else(|| doc.get("security"));
    let _ = write!(
        out,
        "<p><strong>Authentication:</strong> {}</p>",
        security_text(security)
    );
    out.push_str(&parameters(doc, body));
    if let Some(request) = body.get("requestBody") {
        let request = resolve(doc, request);
        let _ = write!(
            out,
            "<h3>Request body{}</h3>{}",
            if request["required"] == Value::Bool(true) {
                ""
            } else {
                " (optional)"
            },
            content(request)
        );
    }
    out.push_str(&responses(doc, body));
    out.push_str("</div></details>");
    out
}

fn parameters(doc: &Value, operation: &Value) -> String {
    let Some(list) = operation["parameters"].as_array().filter(|l| !l.is_empty()) else {
        return String::new();
    };
    let mut out = String::from(
        "<h3>Parameters</h3><div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Name</th>\
         <th scope=\"col\">In</th><th scope=\"col\">Type</th><th scope=\"col\">Description</th>\
         </tr></thead><tbody>",
    );
    for parameter in list {
        let parameter = resolve(doc, parameter);
        let required = if parameter["required"] == Value::Bool(true) {
            " <span class=\"badge\">required</span>"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code>{required}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(parameter["name"].as_str().unwrap_or("")),
            escape(parameter["in"].as_str().unwrap_or("")),
            type_text(&parameter["schema"]),
            inline(parameter["description"].as_str().unwrap_or(""))
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

fn responses(doc: &Value, operation: &Value) -> String {
    let Some(map) = operation["responses"].as_object() else {
        return String::new();
    };
    let mut codes: Vec<(&String, &Value)> = map.iter().collect();
    codes.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::from(
        "<h3>Responses</h3><div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Status</th>\
         <th scope=\"col\">Description</th><th scope=\"col\">Body</th></tr></thead><tbody>",
    );
    for (status, response) in codes {
        let response = resolve(doc, response);
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(status),
            inline(response["description"].as_str().unwrap_or("")),
            content(response)
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// A request or response's media types and their schemas.
fn content(holder: &Value) -> String {
    let Some(media) = holder["content"].as_object().filter(|m| !m.is_empty()) else {
        return "<span class=\"muted\">none</span>".to_owned();
    };
    media
        .iter()
        .map(|(kind, body)| {
            format!(
                "<code>{}</code> {}",
                escape(kind),
                type_text(&body["schema"])
            )
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn schemas(doc: &Value) -> String {
    let mut out = String::from(
        "<section id=\"schemas\" aria-labelledby=\"schemas-title\">\
         <h2 id=\"schemas-title\">Schemas</h2>",
    );
    let empty = Map::new();
    let all = doc["components"]["schemas"].as_object().unwrap_or(&empty);
    for (name, schema) in all {
        let _ = write!(
            out,
            "<section class=\"schema card\" id=\"schema-{id}\" aria-labelledby=\"schema-{id}-title\">\
             <h3 id=\"schema-{id}-title\"><code>{id}</code></h3>{}",
            paragraphs(schema["description"].as_str().unwrap_or("")),
            id = escape(name)
        );
        out.push_str(&properties(schema));
        out.push_str("</section>");
    }
    out.push_str("</section>");
    out
}

/// An object schema's fields as a table, or any other schema's type.
fn properties(schema: &Value) -> String {
    let Some(fields) = schema["properties"].as_object() else {
        return format!("<p>{}</p>", type_text(schema));
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = String::from(
        "<div class=\"table-wrap\"><table><thead><tr><th scope=\"col\">Field</th>\
         <th scope=\"col\">Type</th><th scope=\"col\">Description</th></tr></thead><tbody>",
    );
    for (name, field) in fields {
        let badge = if required.contains(&name.as_str()) {
            " <span class=\"badge\">required</span>"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code>{badge}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            type_text(field),
            inline(field["description"].as_str().unwrap_or(""))
        );
    }
    out.push_str("</tbody></table></div>");
    if schema["additionalProperties"] == Value::Bool(false) {
        out.push_str("<p class=\"muted\">Other fields are refused.</p>");
    }
    out
}

/// A schema's type in a few words: references link to their section.
fn type_text(schema: &Value) -> String {
    if let Some(target) = schema["$ref"].as_str() {
        let name = target.rsplit('/').next().unwrap_or(target);
        return format!(
            "<a href=\"#schema-{id}\"><code>{id}</code></a>",
            id = escape(name)
        );
    }
    for (key, joiner) in [("oneOf", " | "), ("anyOf", " | "), ("allOf", " & ")] {
        if let Some(parts) = schema[key].as_array() {
            return parts.iter().map(type_text).collect::<Vec<_>>().join(joiner);
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", literal(v)))
            .collect();
        return format!("one of {}", values.join(", "));
    }
    if let Some(value) = schema.get("const") {
        return format!("<code>{}</code>", literal(value));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let named = types
        .iter()
        .map(|t| match *t {
            "array" => format!("array of {}", type_text(&schema["items"])),
            other => escape(other),
        })
        .collect::<Vec<_>>()
        .join(" | ");
    let named = if named.is_empty() {
        "any".to_owned()
    } else {
        named
    };
    match schema["format"].as_str() {
        Some(format) => format!("{named} ({})", escape(format)),
        None => named,
    }
}

/// A literal value as written in a request: strings without their quotes.
fn literal(value: &Value) -> String {
    match value {
        Value::String(text) => escape(text),
        other => escape(&other.to_string()),
    }
}

/// `value`, or what its `$ref` names under `components`.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str().and_then(|r| r.strip_prefix("#/")) {
        Some(pointer) => doc.pointer(&format!("/{pointer}")).unwrap_or(&Value::Null),
        None => value,
    }
}

/// The schemes a security requirement list accepts, in words.
fn security_text(security: Option<&Value>) -> String {
    let Some(options) = security.and_then(Value::as_array) else {
        return "none".to_owned();
    };
    let words: Vec<String> = options
        .iter()
        .filter_map(Value::as_object)
        .map(|all| {
            if all.is_empty() {
                "none".to_owned()
            } else {
                all.keys()
                    .map(|k| format!("<code>{}</code>", escape(k)))
                    .collect::<Vec<_>>()
                    .join(" + ")
            }
        })
        .collect();
    if words.is_empty() {
        "none".to_owned()
    } else {
        words.join(" or ")
    }
}

/// Text with `code` spans (between backticks) and nothing else interpreted.
fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            out.push_str(&escape(part));
        }
    }
    out
}

/// Text split into paragraphs at blank lines, each line break inside one a space.
fn paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>", inline(&p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {"title": "Tessera", "version": "1.2.3", "description": "Errors are `problems`."},
            "security": [{"bearer": []}],
            "paths": {
                "/api/v1/things/{id}": {
                    "get": {
                        "tags": ["things"],
                        "operationId": "get_thing",
                        "summary": "Reads a <thing>. More text.",
                        "parameters": [{"$ref": "#/components/parameters/id"}],
                        "responses": {
                            "200": {"description": "The thing", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                            "404": {"$ref": "#/components/responses/NotFound"}
                        }
                    },
                    "delete": {"operationId": "delete_thing", "security": [{}], "responses": {"204": {"description": "Gone"}}}
                }
            },
            "components": {
                "parameters": {"id": {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}},
                "responses": {"NotFound": {"description": "No such thing", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}},
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A token."}},
                "schemas": {
                    "Thing": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"},
                        "tags": {"type": ["array", "null"], "items": {"type": "string"}},
                        "kind": {"enum": ["a", "b"]}
                    }, "additionalProperties": false},
                    "Problem": {"type": "object", "properties": {"code": {"type": "string"}}}
                }
            }
        })
    }

    #[test]
    fn every_operation_and_schema_has_its_anchor() {
        let page = String::from_utf8(Reference::render(&doc()).0.to_vec()).expect("UTF-8");
        for anchor in [
            "id=\"get_thing\"",
            "id=\"delete_thing\"",
            "id=\"tag-things\"",
            "id=\"tag-other\"",
            "id=\"schema-Thing\"",
            "id=\"schema-Problem\"",
        ] {
            assert!(page.contains(anchor), "{anchor} missing");
        }
        assert!(page.contains("<a href=\"#schema-Thing\"><code>Thing</code></a>"));
    }

    #[test]
    fn references_are_resolved_and_types_spelled_out() {
        let page = String::from_utf8(Reference::render(&doc()).0.to_vec()).expect("UTF-8");
        assert!(page.contains("<code>id</code> <span class=\"badge\">required</span>"));
        assert!(page.contains("string (uuid)"));
        assert!(page.contains("No such thing"));
        assert!(page.contains("array of string | null"));
        assert!(page.contains("one of <code>a</code>, <code>b</code>"));
        assert!(page.contains("Other fields are refused."));
        // The document's default scheme, and an operation's own "none".
        assert!(page.contains("<strong>Authentication:</strong> <code>bearer</code>"));
        assert!(page.contains("<strong>Authentication:</strong> none"));
    }

    #[test]
    fn text_from_the_document_is_escaped_and_nothing_is_inline() {
        let page = String::from_utf8(Reference::render(&doc()).0.to_vec()).expect("UTF-8");
        assert!(page.contains("Reads a &lt;thing&gt;"));
        assert!(!page.contains("<thing>"));
        assert!(page.contains("Errors are <code>problems</code>."));
        for banned in ["<script", "style=", "<style", "javascript:"] {
            assert!(!page.contains(banned), "{banned}");
        }
    }
}
