import type { PageStatus, PageTarget, PageView, Severity } from '../ops/contracts.ts';
import type { Actor } from '../runbooks/model.ts';
import type { Shift } from './rotation.ts';

export type { Shift } from './rotation.ts';

/** Who is on call in one layer at an instant. */
export interface LayerOnCall {
  layer: string;
  /** Undefined before the rotation's first handoff. */
  person?: string | undefined;
  name?: string | undefined;
  /** The shift (or override) running: its start and end. */
  start?: string | undefined;
  end?: string | undefined;
  /** Set when an override put this person here. */
  override?: Shift['override'];
}

export interface ScheduleOnCall {
  schedule: string;
  timezone: string;
  at: string;
  layers: LayerOnCall[];
}

export interface OverrideInput {
  schedule: string;
  /** @default the schedule's first layer */
  layer?: string | undefined;
  person: string;
  from: Date;
  to: Date;
  reason?: string | undefined;
}

export interface Override {
  id: string;
  schedule: string;
  layer: string;
  person: string;
  from: string;
  to: string;
  reason?: string | undefined;
  createdAt: string;
  createdBy: string;
}

export type DeliveryStatus = 'pending' | 'sending' | 'delivered' | 'failed' | 'cancelled';

export interface DeliveryAttempt {
  n: number;
  at: string;
  outcome: 'ok' | 'failed' | 'interrupted';
  destination?: string | undefined;
  response?: string | undefined;
  error?: string | undefined;
  durationMs: number;
  retryAfterMs?: number | undefined;
}

/** One notification: a page's level and round to one person through one channel. */
export interface Delivery {
  deliveryId: string;
  level: number;
  round: number;
  person?: string | undefined;
  channel: string;
  status: DeliveryStatus;
  attempts: DeliveryAttempt[];
  nextAt?: string | undefined;
  lastError?: string | undefined;
}

export interface PageDetail extends PageView {
  body: string;
  targets?: PageTarget[] | undefined;
  exhaustedAt?: string | undefined;
  resolvedBy?: string | undefined;
  deliveries: Delivery[];
}

export interface PageFilter {
  status?: PageStatus[] | undefined;
  incidentId?: string | undefined;
  limit?: number | undefined;
}

/** The outcome of an acknowledge or resolve: the page, and whether this call changed it. */
export interface PageChange {
  page: PageView;
  changed: boolean;
}

/** What a signed acknowledge link stands for (shown on its confirmation page). */
export interface AckLinkView {
  page: PageView;
  person: string;
  name: string;
  expiresAt: string;
}

export type { Actor, PageStatus, PageTarget, PageView, Severity };
