/**
 * The mass-delete guard: a refresh that would remove a large share of the remote list, or empty
 * it because the dataset became empty, is far more often a broken upstream job than an intended
 * change. Such a run waits for an operator instead of sending the deletions. Pure.
 */

export interface GuardPolicy {
  enabled: boolean;
  /** Deletions above this share of the remote list need approval. */
  maxShare: number;
  /** An empty dataset needs approval, whatever the share. */
  onEmptyDataset: boolean;
}

export interface GuardCheck {
  triggered: boolean;
  reason: string;
  deletions: number;
  remoteSize: number;
}

export function checkMassDelete(
  policy: GuardPolicy,
  counts: { deletions: number; remoteSize: number; datasetSize: number },
): GuardCheck {
  const { deletions, remoteSize, datasetSize } = counts;
  const base = { deletions, remoteSize };
  if (!policy.enabled || deletions === 0 || remoteSize === 0)
    return { triggered: false, reason: '', ...base };
  const share = deletions / remoteSize;
  const percent = (n: number) => `${+(n * 100).toFixed(1)}%`;
  if (datasetSize === 0 && policy.onEmptyDataset) {
    return {
      triggered: true,
      reason: `the dataset is empty: all ${deletions.toLocaleString('en-US')} members would be removed`,
      ...base,
    };
  }
  if (share > policy.maxShare) {
    return {
      triggered: true,
      reason: `${deletions.toLocaleString('en-US')} deletions would remove ${percent(share)} of the list (limit ${percent(policy.maxShare)})`,
      ...base,
    };
  }
  return { triggered: false, reason: '', ...base };
}
