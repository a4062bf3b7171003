/*
 * cnn_bp.h -- every C declaration of cnn_bp, for the Cython engine
 * (src/cnn_bp/_kernels.pxd reads this one file): the kernels (kernels.h),
 * the threads that share the work (parallel.h) and the BLAS they call
 * (thread_blas.h). A C file includes only the headers it needs.
 */
#ifndef CNN_BP_H
#define CNN_BP_H

#include "kernels.h"
#include "parallel.h"
#include "thread_blas.h"

#endif /* CNN_BP_H */
