//! Discovery documents (RFC 7643 §5–7, RFC 7644 §4): ServiceProviderConfig,
//! ResourceTypes and Schemas, describing what this server supports.

use serde_json::{json, Value};

use super::list::MAX_RESULTS;
use super::resource::{ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

pub const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

fn meta(resource_type: &str, location: String) -> Value {
    json!({ "resourceType": resource_type, "location": location })
}

/// `/ServiceProviderConfig`.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": MAX_RESULTS },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "Authorization: Bearer <SCIM secret>; `portcullis scim rotate-secret` makes a new one",
            "primary": true,
        }],
        "meta": meta("ServiceProviderConfig", format!("{base}/ServiceProviderConfig")),
    })
}

fn resource_type(base: &str, name: &str) -> Value {
    let (endpoint, schema, description) = match name {
        "User" => ("/Users", USER_SCHEMA, "User Account"),
        _ => ("/Groups", GROUP_SCHEMA, "Group"),
    };
    let mut v = json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": name,
        "name": name,
        "endpoint": endpoint,
        "description": description,
        "schema": schema,
        "meta": meta("ResourceType", format!("{base}/ResourceTypes/{name}")),
    });
    if name == "User" {
        v["schemaExtensions"] = json!([{ "schema": ENTERPRISE_SCHEMA, "required": false }]);
    }
    v
}

/// `/ResourceTypes/{name}` (`User`, `Group`).
pub fn resource_type_by_name(base: &str, name: &str) -> Option<Value> {
    ["User", "Group"]
        .iter()
        .find(|n| n.eq_ignore_ascii_case(name))
        .map(|n| resource_type(base, n))
}

/// `/ResourceTypes`.
pub fn resource_types(base: &str) -> Value {
    super::list::response(
        2,
        1,
        vec![resource_type(base, "User"), resource_type(base, "Group")],
    )
}

/// An attribute definition (RFC 7643 §7) with the defaults: single-valued,
/// optional, case-insensitive, readWrite, returned by default, not unique;
/// `overrides` change those. `kind`: string, boolean, complex, reference.
fn attr(name: &str, kind: &str, overrides: &[(&str, Value)]) -> Value {
    let mut v = json!({
        "name": name, "type": kind, "multiValued": false, "required": false, "caseExact": false,
        "mutability": "readWrite", "returned": "default", "uniqueness": "none", "description": name,
    });
    for (k, x) in overrides {
        v[*k] = x.clone();
    }
    v
}

fn s(name: &str) -> Value {
    attr(name, "string", &[])
}

fn with_subs(mut a: Value, subs: Vec<Value>) -> Value {
    a["subAttributes"] = Value::Array(subs);
    a
}

fn multi(name: &str) -> Value {
    with_subs(
        attr(name, "complex", &[("multiValued", json!(true))]),
        vec![
            s("value"),
            s("display"),
            s("type"),
            attr("primary", "boolean", &[]),
        ],
    )
}

fn user_schema() -> Value {
    let attributes = vec![
        attr(
            "userName",
            "string",
            &[("required", json!(true)), ("uniqueness", json!("server"))],
        ),
        with_subs(
            attr("name", "complex", &[]),
            [
                "formatted",
                "familyName",
                "givenName",
                "middleName",
                "honorificPrefix",
                "honorificSuffix",
            ]
            .map(s)
            .to_vec(),
        ),
        s("displayName"),
        s("nickName"),
        s("profileUrl"),
        s("title"),
        s("userType"),
        s("preferredLanguage"),
        s("locale"),
        s("timezone"),
        attr("active", "boolean", &[]),
        attr(
            "password",
            "string",
            &[
                ("mutability", json!("writeOnly")),
                ("returned", json!("never")),
            ],
        ),
        multi("emails"),
        multi("phoneNumbers"),
        multi("ims"),
        multi("photos"),
        multi("addresses"),
        with_subs(
            attr(
                "groups",
                "complex",
                &[
                    ("multiValued", json!(true)),
                    ("mutability", json!("readOnly")),
                ],
            ),
            vec![
                attr("value", "string", &[("mutability", json!("readOnly"))]),
                attr("$ref", "reference", &[("mutability", json!("readOnly"))]),
                attr("display", "string", &[("mutability", json!("readOnly"))]),
            ],
        ),
        multi("entitlements"),
        multi("roles"),
        multi("x509Certificates"),
    ];
    json!({ "id": USER_SCHEMA, "name": "User", "description": "User Account", "attributes": attributes })
}

fn group_schema() -> Value {
    let attributes = vec![
        attr(
            "displayName",
            "string",
            &[("required", json!(true)), ("uniqueness", json!("server"))],
        ),
        with_subs(
            attr("members", "complex", &[("multiValued", json!(true))]),
            vec![
                attr(
                    "value",
                    "string",
                    &[
                        ("caseExact", json!(true)),
                        ("mutability", json!("immutable")),
                    ],
                ),
                attr("$ref", "reference", &[("mutability", json!("immutable"))]),
                attr("display", "string", &[("mutability", json!("readOnly"))]),
                attr("type", "string", &[("mutability", json!("immutable"))]),
            ],
        ),
    ];
    json!({ "id": GROUP_SCHEMA, "name": "Group", "description": "Group", "attributes": attributes })
}

fn enterprise_schema() -> Value {
    let attributes = vec![
        s("employeeNumber"),
        s("costCenter"),
        s("organization"),
        s("division"),
        s("department"),
        with_subs(
            attr("manager", "complex", &[]),
            vec![
                s("value"),
                s("$ref"),
                attr(
                    "displayName",
                    "string",
                    &[("mutability", json!("readOnly"))],
                ),
            ],
        ),
    ];
    json!({ "id": ENTERPRISE_SCHEMA, "name": "EnterpriseUser", "description": "Enterprise User", "attributes": attributes })
}

fn finish(base: &str, mut v: Value) -> Value {
    let id = v["id"].as_str().unwrap_or_default().to_string();
    v["schemas"] = json!([SCHEMA_SCHEMA]);
    v["meta"] = meta("Schema", format!("{base}/Schemas/{id}"));
    v
}

/// `/Schemas/{urn}`.
pub fn schema_by_id(base: &str, id: &str) -> Option<Value> {
    [user_schema(), group_schema(), enterprise_schema()]
        .into_iter()
        .find(|s| s["id"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(id)))
        .map(|s| finish(base, s))
}

/// `/Schemas`.
pub fn schemas(base: &str) -> Value {
    let all: Vec<Value> = [user_schema(), group_schema(), enterprise_schema()]
        .into_iter()
        .map(|s| finish(base, s))
        .collect();
    super::list::response(3, 1, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_provider_config_advertises_what_is_supported() {
        let v = service_provider_config("https://auth.example.com/scim/v2");
        assert_eq!(v["patch"]["supported"], true);
        assert_eq!(v["bulk"]["supported"], false);
        assert_eq!(v["filter"]["supported"], true);
        assert_eq!(v["filter"]["maxResults"], MAX_RESULTS);
        assert_eq!(v["etag"]["supported"], true);
        assert_eq!(v["authenticationSchemes"][0]["type"], "oauthbearertoken");
    }

    #[test]
    fn resource_types_list_users_and_groups() {
        let v = resource_types("b");
        assert_eq!(v["totalResults"], 2);
        assert_eq!(v["Resources"][0]["endpoint"], "/Users");
        assert_eq!(v["Resources"][1]["schema"], GROUP_SCHEMA);
        assert!(resource_type_by_name("b", "group").is_some());
        assert!(resource_type_by_name("b", "Thing").is_none());
    }

    #[test]
    fn schemas_describe_user_group_and_enterprise() {
        let v = schemas("b");
        assert_eq!(v["totalResults"], 3);
        let user = schema_by_id("b", USER_SCHEMA).unwrap();
        let user_name = user["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "userName")
            .unwrap();
        assert_eq!(user_name["uniqueness"], "server");
        assert_eq!(user_name["caseExact"], false);
        assert_eq!(user["meta"]["location"], format!("b/Schemas/{USER_SCHEMA}"));
        assert!(schema_by_id("b", ENTERPRISE_SCHEMA).is_some());
        assert!(schema_by_id("b", "urn:nope").is_none());
    }
}
