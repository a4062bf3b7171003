"""Backpropagation worked by hand on a 2-2-1 network, checked against cnn_bp.

Two inputs, two sigmoid hidden units, one linear output, squared error
C = 1/2 (a2 - y)^2 (MLPRegressor's output is linear). Every number below is
computed from the equations with plain floats, then compared with what
cnn_bp's engine computes (cnn_bp.backprop_trace): they must agree to 1e-12.

    python examples/backprop_by_hand.py
"""

import math

import numpy as np

from cnn_bp import MLPRegressor, backprop_trace, check_gradients


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


# The network, set by hand (W[k][j] connects input k to hidden unit j).
x = [0.05, 0.10]
W1 = [[0.15, 0.25], [0.20, 0.30]]
b1 = [0.35, 0.35]
W2 = [0.40, 0.45]  # hidden unit j -> the output
b2 = 0.60
y = 0.01

# Forward:  z1_j = sum_k x_k W1_kj + b1_j,  a1_j = sigmoid(z1_j)
z1 = [x[0] * W1[0][j] + x[1] * W1[1][j] + b1[j] for j in range(2)]  # 0.3775, 0.3925
a1 = [sigmoid(z) for z in z1]  # 0.593270, 0.596884
#           z2 = sum_j a1_j W2_j + b2,  a2 = z2 (linear output)
z2 = a1[0] * W2[0] + a1[1] * W2[1] + b2  # 1.105906
a2 = z2
C = 0.5 * (a2 - y) ** 2  # 0.600505

# BP1  output error: delta2 = dC/dz2 = a2 - y
delta2 = a2 - y  # 1.095906
# BP2  hidden errors: delta1_j = delta2 W2_j sigmoid'(z1_j), sigmoid' = a (1 - a)
delta1 = [delta2 * W2[j] * a1[j] * (1 - a1[j]) for j in range(2)]  # 0.105777, 0.118660
# BP3/BP4  gradients: dC/dW_kj = a_k delta_j, dC/db_j = delta_j
dW2 = [a1[j] * delta2 for j in range(2)]  # 0.650168, 0.654129
dW1 = [[x[k] * delta1[j] for j in range(2)] for k in range(2)]

print(f"z1 = {z1[0]:.6f} {z1[1]:.6f}   a1 = {a1[0]:.6f} {a1[1]:.6f}")
print(f"z2 = a2 = {a2:.6f}   C = {C:.6f}")
print(f"delta2 = {delta2:.6f}   delta1 = {delta1[0]:.6f} {delta1[1]:.6f}")
print(f"dC/dW2 = {dW2[0]:.6f} {dW2[1]:.6f}   dC/db2 = {delta2:.6f}")
print(f"dC/dW1 = {dW1[0][0]:.6f} {dW1[0][1]:.6f} / {dW1[1][0]:.6f} {dW1[1][1]:.6f}")

# The same network in cnn_bp: build it, then set the weights (alpha = 0,
# so the cost has no L2 term).
model = MLPRegressor(hidden_layer_sizes=(2,), activation="logistic", alpha=0.0, solver="sgd")
model.partial_fit([x], [y])
model.coefs_ = [np.array(W1), np.array(W2).reshape(2, 1)]
model.intercepts_ = [np.array(b1), np.array([b2])]
trace = backprop_trace(model, [x], [y])

checks = {
    "z1": (trace[1].z[0], z1), "a1": (trace[1].a[0], a1),
    "z2": (trace[2].z[0, 0], z2), "a2": (trace[2].a[0, 0], a2), "C": (trace.loss, C),
    "delta2": (trace[2].delta[0, 0], delta2), "delta1": (trace[1].delta[0], delta1),
    "dC/dW2": (trace[2].dC_dW[:, 0], dW2), "dC/db2": (trace[2].dC_db[0], delta2),
    "dC/dW1": (trace[1].dC_dW, dW1), "dC/db1": (trace[1].dC_db, delta1),
}
for name, (engine_value, hand_value) in checks.items():
    np.testing.assert_allclose(engine_value, hand_value, rtol=1e-12, err_msg=name)
print(f"cnn_bp's trace agrees with the hand computation on all {len(checks)} quantities")
print(check_gradients(model, [x], [y]))
