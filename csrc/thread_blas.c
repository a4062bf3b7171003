/*
 * thread_blas.c -- the one definition of cnnbp_thread_blas (cnn_bp.h): the
 * GEMM the threads sharing a batch call, set once from Python.
 */
#include "cnn_bp.h"

cnnbp_blas cnnbp_thread_blas = {NULL, NULL, NULL, NULL, NULL, NULL};
