# Does R's mice read mlmi's long format? (issue 13, point 3)
#
#   Rscript tools/check_long_format_mice.R imputed.csv "y ~ x1 + x2"
#
# imputed.csv: written by `mlmi impute ... --include-original` (or
# Imputed.complete("long", include=True)). The script loads it with
# mice::as.mids(read.csv(...)), checks that every completed data set mice rebuilds is the
# file's imputation, that mice's own complete(, "long") numbers .id 1..n and .imp 1..m,
# and fits and pools the formula with mice (lm) to show the object is usable.
# Prints "OK m=<m> n=<n>" and the pooled table; stops with an error otherwise.
suppressPackageStartupMessages(library(mice))
args <- commandArgs(trailingOnly = TRUE)
long <- read.csv(args[1])
imp <- as.mids(long)
m <- max(long$.imp)
n <- sum(long$.imp == 0)
stopifnot(imp$m == m, nrow(imp$data) == n)
vars <- setdiff(names(long), c(".imp", ".id"))
for (i in seq_len(m)) {
  rebuilt <- complete(imp, i)[, vars]
  written <- long[long$.imp == i, vars]
  rownames(rebuilt) <- NULL
  rownames(written) <- NULL
  stopifnot(isTRUE(all.equal(rebuilt, written, check.attributes = FALSE)))
}
back <- complete(imp, "long")
stopifnot(identical(sort(unique(back$.imp)), seq_len(m)))
stopifnot(identical(as.integer(back$.id[back$.imp == 1]), seq_len(n)))
# the missing entries mice sees are those of the .imp = 0 block
stopifnot(sum(is.na(imp$data)) == sum(is.na(long[long$.imp == 0, vars])))
cat(sprintf("OK m=%d n=%d\n", m, n))
if (length(args) > 1) {
  fit <- with(imp, lm(as.formula(args[2])))
  print(summary(pool(fit)))
}
