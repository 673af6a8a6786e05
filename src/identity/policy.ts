import { NotAllowedError, assertNever } from '../core/index.ts';
import type { GameopsConfig } from '../config/index.ts';
import { ROLES, type AccessPolicy, type AccessRequest, type Actor, type Role } from '../runbooks/model.ts';

/** A role's place in ROLES (viewer 0 … admin 3); -1 for anything that is not a role. */
export function roleRank(role: unknown): number {
  return ROLES.indexOf(role as Role);
}

/** True when `role` is `needed` or stronger. */
export function roleAtLeast(role: unknown, needed: Role): boolean {
  const rank = roleRank(role);
  return rank >= 0 && rank >= roleRank(needed);
}

/**
 * Who may do what, from the config. Roles are ordered viewer < responder < operator < admin, and a role
 * may do everything a weaker one may:
 * - `read`: viewer and up;
 * - `run`: the runbook's `runBy` roles (`runbooks.access.<name>.run` in the config replaces them) or a
 *   stronger one, and admin; an empty `runBy` means admin only;
 * - `approve`: the step's `approvers` or a stronger role, and admin;
 * - `admin`: admin.
 * Anything else, including an actor with an unknown role, is refused.
 */
export function createAccessPolicy(config: Pick<GameopsConfig, 'runbooks'>): AccessPolicy {
  const overrides = config.runbooks.access;
  const weakestAllowed = (request: AccessRequest): Role => {
    switch (request.action) {
      case 'read':
        return 'viewer';
      case 'admin':
        return 'admin';
      case 'run':
        return weakest(
          Object.hasOwn(overrides, request.runbook.name)
            ? overrides[request.runbook.name]!.run
            : request.runbook.runBy,
        );
      case 'approve':
        return weakest(request.step.approvers);
      default:
        return assertNever(request, 'access request');
    }
  };
  const allows = (actor: Actor, request: AccessRequest): boolean =>
    roleAtLeast(actor.role, weakestAllowed(request));
  return {
    allows,
    check(actor, request) {
      if (allows(actor, request)) return;
      const needed = weakestAllowed(request);
      throw new NotAllowedError(
        `${describeActor(actor)} may not ${what(request)}: needs ${rolesFrom(needed)}`,
        {
          details: { actor: actor.id, role: actor.role, needs: needed, action: request.action },
        },
      );
    },
  };
}

/** The weakest of `roles`; admin when there are none (default deny). */
function weakest(roles: readonly Role[]): Role {
  let best: Role = 'admin';
  for (const role of roles) if (roleRank(role) >= 0 && roleRank(role) < roleRank(best)) best = role;
  return best;
}

function describeActor(actor: Actor): string {
  return `${actor.name || actor.id} (${String(actor.role)})`;
}

function what(request: AccessRequest): string {
  switch (request.action) {
    case 'read':
      return 'read runbooks and runs';
    case 'run':
      return `run ${request.runbook.name}`;
    case 'approve':
      return `approve step ${request.step.id}`;
    case 'admin':
      return 'administer gameops (tokens, audit verification)';
    default:
      return assertNever(request, 'access request');
  }
}

/** `operator or admin`, `responder, operator or admin`, `admin`. */
export function rolesFrom(role: Role): string {
  const roles = ROLES.slice(roleRank(role));
  return roles.length === 1 ? roles[0]! : `${roles.slice(0, -1).join(', ')} or ${roles.at(-1)!}`;
}
