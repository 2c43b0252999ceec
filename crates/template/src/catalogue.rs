//! What the loaded templates are: each name, the variables its data must hold, and the locales
//! it has variants for. The variables are read from the compiled templates themselves, so the
//! list cannot drift from what rendering needs.

use std::collections::{BTreeMap, BTreeSet};

use handlebars::template::{HelperTemplate, Parameter, TemplateElement};
use handlebars::{Path, PathSeg, Template};

use crate::Templates;

/// One template and its localised variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInfo {
    pub name: String,
    /// Top-level keys of `data` the template reads (`code`, `expiryMinutes`), in order.
    pub variables: Vec<String>,
    /// Locales with a variant of their own (`fr` for `two-factor-auth.fr.hbs`), in order.
    pub locales: Vec<String>,
    /// Its messages carry a secret: never logged, their body emptied once final.
    pub sensitive: bool,
}

/// Block helpers whose block reads from a new context (an item, an object): names inside
/// them are relative to it, not to `data`.
const CONTEXT_HELPERS: &[&str] = &["each", "with"];

impl Templates {
    /// Every template by name, localised variants folded into their template.
    pub fn catalogue(&self) -> Vec<TemplateInfo> {
        let mut by_name: BTreeMap<&str, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
        for registered in self.names() {
            let (name, locale) = match registered.split_once('.') {
                Some((name, locale)) => (name, Some(locale)),
                None => (registered, None),
            };
            let (variables, locales) = by_name.entry(name).or_default();
            if let Some(template) = self.registry.get_template(registered) {
                collect_template(template, variables);
            }
            if let Some(locale) = locale {
                locales.insert(locale.to_owned());
            }
        }
        by_name
            .into_iter()
            .map(|(name, (variables, locales))| TemplateInfo {
                name: name.to_owned(),
                // A variable with a default is not one `data` must hold.
                variables: variables
                    .into_iter()
                    .filter(|variable| !self.is_default(variable))
                    .collect(),
                locales: locales.into_iter().collect(),
                sensitive: self.is_sensitive(name),
            })
            .collect()
    }
}

fn collect_template(template: &Template, variables: &mut BTreeSet<String>) {
    for element in &template.elements {
        collect_element(element, variables);
    }
}

fn collect_element(element: &TemplateElement, variables: &mut BTreeSet<String>) {
    match element {
        TemplateElement::Expression(helper)
        | TemplateElement::HtmlExpression(helper)
        | TemplateElement::HelperBlock(helper) => collect_helper(helper, variables),
        TemplateElement::DecoratorExpression(decorator)
        | TemplateElement::DecoratorBlock(decorator)
        | TemplateElement::PartialExpression(decorator)
        | TemplateElement::PartialBlock(decorator) => {
            for parameter in decorator.params.iter().chain(decorator.hash.values()) {
                collect_parameter(parameter, variables);
            }
            if let Some(template) = &decorator.template {
                collect_template(template, variables);
            }
        }
        // Text and comments; and whatever a later handlebars adds, which reads no data we know.
        _ => {}
    }
}

fn collect_helper(helper: &HelperTemplate, variables: &mut BTreeSet<String>) {
    // `{{code}}` is an expression whose name is the path it prints.
    collect_parameter(&helper.name, variables);
    for parameter in helper.params.iter().chain(helper.hash.values()) {
        collect_parameter(parameter, variables);
    }
    let changes_context = matches!(
        &helper.name,
        Parameter::Name(name) if CONTEXT_HELPERS.contains(&name.as_str())
    );
    if !changes_context {
        for template in helper.template.iter().chain(&helper.inverse) {
            collect_template(template, variables);
        }
    }
}

fn collect_parameter(parameter: &Parameter, variables: &mut BTreeSet<String>) {
    match parameter {
        Parameter::Path(Path::Relative((segments, _))) => {
            if let Some(PathSeg::Named(first)) = segments.first() {
                if first != "this" {
                    variables.insert(first.clone());
                }
            }
        }
        Parameter::Subexpression(subexpression) => {
            collect_element(&subexpression.element, variables);
        }
        // `@index`, `../x`, helper names and literals are not data.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue(templates: &[(&str, &str)]) -> Vec<TemplateInfo> {
        let mut loaded = Templates::empty();
        for (name, source) in templates {
            loaded.add(name, source).unwrap();
        }
        loaded.catalogue()
    }

    #[test]
    fn the_built_in_templates_need_code_and_expiry_and_are_sensitive_in_every_locale() {
        let mut locales: Vec<String> = crate::BUILT_IN_LOCALES
            .iter()
            .map(|locale| (*locale).to_owned())
            .collect();
        locales.sort();
        assert_eq!(
            Templates::built_in().unwrap().catalogue(),
            [
                TemplateInfo {
                    name: "two-factor-auth".into(),
                    // `brand` has a default: data need not hold it.
                    variables: vec!["code".into(), "expiryMinutes".into()],
                    locales: locales.clone(),
                    sensitive: true,
                },
                TemplateInfo {
                    name: "two-factor-auth-transaction".into(),
                    variables: ["amount", "code", "currency", "expiryMinutes", "payee"]
                        .map(String::from)
                        .to_vec(),
                    locales: locales.clone(),
                    sensitive: true,
                },
                TemplateInfo {
                    name: "two-factor-auth-transaction-voice".into(),
                    variables: [
                        "amount",
                        "code_digits",
                        "currency",
                        "expiryMinutes",
                        "payee"
                    ]
                    .map(String::from)
                    .to_vec(),
                    locales: locales.clone(),
                    sensitive: true,
                },
                TemplateInfo {
                    name: "two-factor-auth-voice".into(),
                    variables: vec!["code_digits".into(), "expiryMinutes".into()],
                    locales,
                    sensitive: true,
                }
            ]
        );
    }

    #[test]
    fn variables_are_found_in_blocks_helpers_and_every_locale() {
        let info = catalogue(&[
            (
                "order",
                "{{#if express}}Fast: {{/if}}{{customer.name}}, {{#each items}}{{this}} {{sku}}{{/each}}",
            ),
            ("order.fr", "Commande {{orderId}} {{lookup totals currency}}"),
            ("order.pt-BR", "Pedido {{orderId}}"),
            ("welcome", "Hello"),
        ]);
        assert_eq!(
            info,
            [
                TemplateInfo {
                    name: "order".into(),
                    // `sku` belongs to each item, not to `data`.
                    variables: ["currency", "customer", "express", "items", "orderId", "totals"]
                        .map(String::from)
                        .to_vec(),
                    locales: vec!["fr".into(), "pt-BR".into()],
                    sensitive: false,
                },
                TemplateInfo {
                    name: "welcome".into(),
                    variables: vec![],
                    locales: vec![],
                    sensitive: false,
                },
            ]
        );
    }
}
