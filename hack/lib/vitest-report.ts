// What `npm test` counts from a vitest JSON report (hack/run-tests.ts).

export interface VitestReport {
  numPassedTests: number;
  numFailedTests: number;
  numPendingTests: number;
  numTodoTests: number;
  testResults: { status: string; assertionResults: { status: string }[] }[];
}

export interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

/**
 * Tests passed, failed and skipped, plus one failure per file that failed without a failed test
 * of its own: a file that did not load, or whose beforeAll threw (vitest then reports its tests
 * as skipped, and only the file as failed).
 */
export function countReport(report: VitestReport): Counts {
  const filesFailedOutsideTests = report.testResults.filter(
    (file) => file.status === 'failed' && !file.assertionResults.some((test) => test.status === 'failed'),
  ).length;
  return {
    passed: report.numPassedTests,
    failed: report.numFailedTests + filesFailedOutsideTests,
    skipped: report.numPendingTests + report.numTodoTests,
  };
}
