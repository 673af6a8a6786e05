export { ROLES, TERMINAL_RUN_STATUSES } from './model.ts';
export type {
  Role,
  Actor,
  Effect,
  StepContext,
  ActionDefinition,
  CheckDefinition,
  CheckVerdict,
  CheckOutcome,
  Template,
  CompareOp,
  Condition,
  Assertion,
  RetryPolicy,
  OnFailure,
  ActionStep,
  CheckStep,
  ApprovalStep,
  ManualStep,
  WaitStep,
  NotifyStep,
  SubRunbookStep,
  GroupStep,
  Step,
  StepKind,
  Runbook,
  PlannedStep,
  Plan,
  RunStatus,
  StepStatus,
  Trigger,
  StepState,
  ApprovalView,
  RunSummary,
  RunView,
  RunEvent,
  StartRunInput,
  RunFilter,
  RunbookInfo,
  RunService,
  Catalog,
  RunbookLibrary,
  AccessRequest,
  AccessPolicy,
} from './model.ts';
export {
  resolveTemplate,
  templateRefs,
  evaluateCondition,
  canResolve,
  hasTemplate,
  FINISHED_STEP_STATUSES,
} from './template.ts';
export type { TemplateScope, TemplateRef } from './template.ts';
export {
  runbookInputSchema,
  yamlRunbookSchema,
  runbookJsonSchema,
  paramsFromSpec,
  parseRunbookInput,
} from './input.ts';
export type { RunbookInput, ParamSpec } from './input.ts';
export { compileRunbook, defineRunbook, formatProblem, RunbookDefinitionError } from './compile.ts';
export type { RunbookOrigin, RunbookProblem } from './compile.ts';
export { createLibrary, loadRunbookDir } from './library.ts';
export { planRun, approvalHash, canonicalJson } from './plan.ts';
export type { PlanContext } from './plan.ts';
export { parseRunbookYaml, readRunbookFile, MAX_RUNBOOK_FILE_BYTES } from './yaml.ts';
export type { ParsedYaml } from './yaml.ts';
export { createEngine, MAX_LOG_LINE_BYTES, MAX_LOG_LINES_PER_STEP } from './engine.ts';
export type { Engine, EngineOptions } from './engine.ts';
