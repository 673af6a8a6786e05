/**
 * RBAC as the API server's authorizer applies it, for the manifests in deploy/rbac.yaml: Roles and
 * ClusterRoles, bound by RoleBindings (namespace) and ClusterRoleBindings (cluster) to ServiceAccounts.
 * Only the rule fields the manifest can use are read: apiGroups, resources (with `/subresource`),
 * resourceNames, verbs.
 */
import { parseAllDocuments } from 'yaml';

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

interface RoleDoc {
  kind: 'Role' | 'ClusterRole';
  name: string;
  namespace?: string;
  rules: PolicyRule[];
}

interface BindingDoc {
  kind: 'RoleBinding' | 'ClusterRoleBinding';
  namespace?: string;
  roleRef: { kind: 'Role' | 'ClusterRole'; name: string };
  subjects: Array<{ kind: string; name: string; namespace?: string }>;
}

export interface RequestAttributes {
  user: string;
  verb: string;
  apiGroup: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
}

export interface RbacPolicy {
  roles: RoleDoc[];
  bindings: BindingDoc[];
  serviceAccounts: Array<{ name: string; namespace: string }>;
}

function strings(value: unknown, what: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string'))
    throw new Error(`rbac: ${what} must be a list of strings`);
  return value;
}

export function parseRbac(text: string): RbacPolicy {
  const policy: RbacPolicy = { roles: [], bindings: [], serviceAccounts: [] };
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`rbac: ${doc.errors[0]!.message}`);
    const obj = doc.toJS() as Record<string, unknown> | null;
    if (obj === null) continue;
    const meta = (obj['metadata'] ?? {}) as { name?: string; namespace?: string };
    const kind = obj['kind'];
    if (kind === 'Role' || kind === 'ClusterRole') {
      const rules = ((obj['rules'] ?? []) as Array<Record<string, unknown>>).map((r, i) => ({
        apiGroups: strings(r['apiGroups'], `${meta.name}.rules[${i}].apiGroups`),
        resources: strings(r['resources'], `${meta.name}.rules[${i}].resources`),
        verbs: strings(r['verbs'], `${meta.name}.rules[${i}].verbs`),
        ...(r['resourceNames'] !== undefined
          ? { resourceNames: strings(r['resourceNames'], 'resourceNames') }
          : {}),
      }));
      policy.roles.push({
        kind,
        name: meta.name ?? '',
        ...(meta.namespace ? { namespace: meta.namespace } : {}),
        rules,
      });
    } else if (kind === 'RoleBinding' || kind === 'ClusterRoleBinding') {
      policy.bindings.push({
        kind,
        ...(meta.namespace ? { namespace: meta.namespace } : {}),
        roleRef: obj['roleRef'] as BindingDoc['roleRef'],
        subjects: (obj['subjects'] ?? []) as BindingDoc['subjects'],
      });
    } else if (kind === 'ServiceAccount') {
      policy.serviceAccounts.push({ name: meta.name ?? '', namespace: meta.namespace ?? 'default' });
    }
  }
  return policy;
}

function subjectMatches(
  subject: BindingDoc['subjects'][number],
  user: string,
  bindingNamespace: string | undefined,
): boolean {
  if (subject.kind === 'ServiceAccount') {
    return (
      user === `system:serviceaccount:${subject.namespace ?? bindingNamespace ?? 'default'}:${subject.name}`
    );
  }
  return subject.kind === 'User' && subject.name === user;
}

function ruleAllows(rule: PolicyRule, a: RequestAttributes): boolean {
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const group = rule.apiGroups.includes('*') || rule.apiGroups.includes(a.apiGroup);
  const res = rule.resources.includes('*') || rule.resources.includes(resource);
  const verb = rule.verbs.includes('*') || rule.verbs.includes(a.verb);
  const names =
    !rule.resourceNames ||
    rule.resourceNames.length === 0 ||
    (a.name !== undefined && rule.resourceNames.includes(a.name));
  return group && res && verb && names;
}

/** The rules that apply to `a.user` for a request in `a.namespace` (cluster-wide ones included). */
export function authorize(policy: RbacPolicy, a: RequestAttributes): boolean {
  for (const binding of policy.bindings) {
    if (!binding.subjects.some((s) => subjectMatches(s, a.user, binding.namespace))) continue;
    if (binding.kind === 'RoleBinding' && binding.namespace !== a.namespace) continue;
    const role = policy.roles.find(
      (r) =>
        r.kind === binding.roleRef.kind &&
        r.name === binding.roleRef.name &&
        (r.kind === 'ClusterRole' || r.namespace === binding.namespace),
    );
    if (role?.rules.some((rule) => ruleAllows(rule, a))) return true;
  }
  return false;
}

/** Every (verb, apiGroup, resource) the policy grants, as `verb group/resource` strings. */
export function grantedPermissions(policy: RbacPolicy): Set<string> {
  const out = new Set<string>();
  for (const role of policy.roles) {
    for (const rule of role.rules) {
      for (const g of rule.apiGroups)
        for (const r of rule.resources) for (const v of rule.verbs) out.add(permissionKey(v, g, r));
    }
  }
  return out;
}

export function permissionKey(verb: string, apiGroup: string, resource: string): string {
  return `${verb} ${apiGroup === '' ? 'core' : apiGroup}/${resource}`;
}
