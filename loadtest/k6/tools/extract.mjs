// Parse k6 scripts with acorn and print, as JSON, what the OpenAPI check needs: every HTTP call
// (method, path template, query parameter names, the shape of its JSON body), every response field
// read through res.json('field'), the response headers read, the Trends, the thresholds, and each
// script's exports and the keys of its exported options.  Used by tests/loadtest/test_k6_scripts.py; k6 itself is not needed.
//
//   node loadtest/k6/tools/extract.mjs FILE.js ...
//
// The scripts keep requests analysable: URLs are template literals that start with ${BASE_URL},
// bodies are JSON.stringify of object literals (or of names bound to them, or Array.from(..., () =>
// literal)).  Anything else is reported under "problems", which fails the check.

import { readFileSync } from 'node:fs';
import * as acorn from 'acorn';

const HTTP_METHODS = { get: 'GET', post: 'POST', put: 'PUT', patch: 'PATCH', del: 'DELETE', head: 'HEAD' };
const FUNCTION_TYPES = new Set(['FunctionDeclaration', 'FunctionExpression', 'ArrowFunctionExpression']);

function walk(node, ancestors, visit) {
  if (!node || typeof node.type !== 'string') return;
  visit(node, ancestors);
  ancestors.push(node);
  for (const key of Object.keys(node)) {
    const value = node[key];
    if (Array.isArray(value)) for (const child of value) walk(child, ancestors, visit);
    else if (value && typeof value.type === 'string') walk(value, ancestors, visit);
  }
  ancestors.pop();
}

function scopesOf(ancestors) {
  // Innermost first: the enclosing functions, then the program.
  return ancestors.filter((n) => FUNCTION_TYPES.has(n.type) || n.type === 'Program').reverse();
}

function keyName(property) {
  if (property.computed) return null;
  if (property.key.type === 'Identifier') return property.key.name;
  if (property.key.type === 'Literal') return String(property.key.value);
  return null;
}

function analyse(file) {
  const source = readFileSync(file, 'utf8');
  const program = acorn.parse(source, { ecmaVersion: 'latest', sourceType: 'module', locations: true });
  const declarations = []; // { name, init, scope, start }
  const requests = [];
  const jsonReads = []; // { object, field, node, ancestors }
  const headerReads = [];
  const thresholds = {};
  const exports = [];
  const trends = [];
  let options = null;
  const problems = [];
  const where = (node) => `${file}:${node.loc.start.line}`;

  walk(program, [], (node, ancestors) => {
    if (node.type === 'VariableDeclarator' && node.id.type === 'Identifier') {
      declarations.push({ name: node.id.name, init: node.init, scope: scopesOf(ancestors)[0], start: node.start });
    }
    if (node.type === 'ExportNamedDeclaration') {
      const decl = node.declaration;
      if (decl && decl.id) exports.push(decl.id.name);
      if (decl && decl.declarations) {
        for (const d of decl.declarations) {
          exports.push(d.id.name);
          if (d.id.name === 'options' && d.init && d.init.type === 'ObjectExpression') {
            options = d.init.properties.map((p) => (p.type === 'Property' ? keyName(p) : null));
          }
        }
      }
    }
    if (node.type === 'NewExpression' && node.callee.name === 'Trend' && node.arguments[0].type === 'Literal') {
      trends.push(node.arguments[0].value);
    }
    if (node.type === 'ExportDefaultDeclaration') exports.push('default');
    if (node.type === 'Property' && ['http_req_duration', 'http_req_failed'].includes(keyName(node))) {
      if (node.value.type === 'ArrayExpression') {
        thresholds[keyName(node)] = node.value.elements.map((e) => (e.type === 'Literal' ? e.value : null));
      }
    }
    if (node.type === 'MemberExpression' && node.object.type === 'MemberExpression') {
      const inner = node.object;
      if (!inner.computed && inner.property.name === 'headers' && node.computed && node.property.type === 'Literal') {
        headerReads.push(node.property.value);
      }
    }
    if (node.type !== 'CallExpression' || node.callee.type !== 'MemberExpression') return;
    const callee = node.callee;
    if (callee.object.type === 'Identifier' && callee.object.name === 'http' && !callee.computed) {
      requests.push(request(node, ancestors));
    } else if (!callee.computed && callee.property.name === 'json' && callee.object.type === 'Identifier') {
      const arg = node.arguments[0];
      if (arg && arg.type === 'Literal' && typeof arg.value === 'string') {
        jsonReads.push({ object: callee.object.name, field: arg.value.split('.')[0], node, ancestors: [...ancestors] });
      }
    }
  });

  function lookup(name, scopes, position) {
    for (const scope of scopes) {
      const found = declarations.filter((d) => d.name === name && d.scope === scope && d.start < position);
      if (found.length) return found[found.length - 1];
    }
    return null;
  }

  function shape(node, ancestors) {
    if (!node) return { kind: 'value' };
    switch (node.type) {
      case 'ObjectExpression': {
        const fields = {};
        for (const property of node.properties) {
          const name = property.type === 'Property' ? keyName(property) : null;
          if (name === null) {
            problems.push(`${where(property)}: a spread or computed key in a request body`);
            continue;
          }
          fields[name] = shape(property.value, ancestors);
        }
        return { kind: 'object', fields };
      }
      case 'ArrayExpression':
        return { kind: 'array', items: node.elements.map((e) => shape(e, ancestors)) };
      case 'ConditionalExpression':
        return { kind: 'anyOf', options: [shape(node.consequent, ancestors), shape(node.alternate, ancestors)] };
      case 'Identifier': {
        const decl = lookup(node.name, scopesOf(ancestors), node.start);
        return decl && decl.init ? shape(decl.init, ancestors) : { kind: 'value' };
      }
      case 'CallExpression': {
        const c = node.callee;
        const isArrayFrom =
          c.type === 'MemberExpression' && c.object.name === 'Array' && !c.computed && c.property.name === 'from';
        const maker = node.arguments[1];
        if (isArrayFrom && maker && maker.type === 'ArrowFunctionExpression' && maker.body.type !== 'BlockStatement') {
          return { kind: 'array', items: [shape(maker.body, ancestors)] };
        }
        return { kind: 'value' };
      }
      default:
        return { kind: 'value' };
    }
  }

  function urlOf(node) {
    if (node.type !== 'TemplateLiteral') return null;
    const [first, ...rest] = node.expressions;
    if (!first || first.type !== 'Identifier' || first.name !== 'BASE_URL' || node.quasis[0].value.cooked !== '') {
      return null;
    }
    let path = '';
    node.quasis.slice(1).forEach((quasi, i) => {
      path += quasi.value.cooked;
      if (i < rest.length) path += '{}';
    });
    const [pathname, query = ''] = path.split('?');
    const names = query ? query.split('&').map((pair) => pair.split('=')[0]) : [];
    return { path: pathname, query: names };
  }

  function request(node, ancestors) {
    const method = HTTP_METHODS[node.callee.property.name];
    const out = { method, line: node.loc.start.line, start: node.start, variable: null, body: null, fields: [] };
    if (!method) {
      problems.push(`${where(node)}: http.${node.callee.property.name} is not checked: call get/post/put/patch/del`);
      return out;
    }
    const url = node.arguments[0] ? urlOf(node.arguments[0]) : null;
    if (url === null) problems.push(`${where(node)}: the URL is not a template literal starting with \${BASE_URL}`);
    else Object.assign(out, url);
    const bodyArg = method === 'GET' || method === 'HEAD' ? null : node.arguments[1];
    if (bodyArg && !(bodyArg.type === 'Literal' && bodyArg.value === null)) {
      const isStringify =
        bodyArg.type === 'CallExpression' &&
        bodyArg.callee.type === 'MemberExpression' &&
        bodyArg.callee.object.name === 'JSON' &&
        bodyArg.callee.property.name === 'stringify';
      if (isStringify) out.body = shape(bodyArg.arguments[0], ancestors);
      else problems.push(`${where(node)}: the body is not JSON.stringify(...)`);
    }
    const parent = ancestors[ancestors.length - 1];
    if (parent && parent.type === 'VariableDeclarator' && parent.id.type === 'Identifier') {
      out.variable = { name: parent.id.name, start: parent.start };
    }
    return out;
  }

  // A response field read through check(res, { name: (r) => r.json('field') }) belongs to res.
  for (const read of jsonReads) {
    let name = read.object;
    let position = read.node.start;
    let scopes = scopesOf(read.ancestors);
    const arrow = scopes[0];
    if (arrow.type === 'ArrowFunctionExpression' && arrow.params.some((p) => p.name === name)) {
      const i = read.ancestors.indexOf(arrow);
      const call = read.ancestors[i - 3]; // CallExpression > ObjectExpression > Property > arrow
      const first = call && call.type === 'CallExpression' ? call.arguments[0] : null;
      if (call.callee.name === 'check' && first && first.type === 'Identifier') {
        name = first.name;
        position = call.start;
        scopes = scopes.slice(1); // resolved outside the arrow function
      }
    }
    const decl = lookup(name, scopes, position);
    const owner = decl ? requests.find((r) => r.variable && r.variable.start === decl.start) : null;
    if (owner) owner.fields.push(read.field);
    else problems.push(`${where(read.node)}: ${read.object}.json('${read.field}') is not tied to one http call`);
  }

  for (const r of requests) delete r.start;
  return { file, requests, headers: headerReads, thresholds, exports, options, trends, problems };
}

const files = process.argv.slice(2);
const out = [];
for (const file of files) {
  try {
    out.push(analyse(file));
  } catch (error) {
    const empty = { requests: [], headers: [], thresholds: {}, exports: [], options: null, trends: [] };
    out.push({ file, ...empty, problems: [`${file}: ${error.message}`] });
  }
}
process.stdout.write(JSON.stringify(out, null, 2));
